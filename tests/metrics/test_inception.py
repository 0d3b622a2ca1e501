"""The FID Inception-v3, on random weights (the real file is never in the tests)."""

from __future__ import annotations

import pytest
import torch

from genforge.errors import GenforgeError
from genforge.metrics.features import FeatureModule, file_sha256
from genforge.metrics.inception import WEIGHTS_SHA256_PREFIX, FIDInceptionV3, load_inception


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return FIDInceptionV3().eval()


def test_state_dict_layout_of_pytorch_fid(network):
    state = network.state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_1a_3x3.bn.running_var"].shape == (32,)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(k.startswith(("AuxLogits", "head")) for k in state)
    convs = [k for k in state if k.endswith(".conv.weight")]
    assert len(convs) == 94  # the 94 convolutions of Inception-v3 without the auxiliary head


def test_outputs_for_grey_and_rgb_images(network):
    grey = torch.rand(2, 1, 28, 28)
    features = FeatureModule(network, "features")(grey)
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and (features >= 0).all()
    assert FeatureModule(network, "logits")(grey).shape == (2, 1008)
    # A grey image is the RGB image with three equal channels.
    assert torch.allclose(features, FeatureModule(network, "features")(grey.expand(-1, 3, -1, -1)), atol=1e-5)


def test_loading_checks_the_hash_and_the_layout(network, tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(network.state_dict(), path)
    # Random weights do not have the published SHA-256: refused unless the check is turned off.
    with pytest.raises(GenforgeError, match=WEIGHTS_SHA256_PREFIX):
        load_inception(path)
    loaded, sha256 = load_inception(path, check_hash=False)
    assert sha256 == file_sha256(path)
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(loaded.features(x), network.features(x), atol=1e-5)
    # Old files without batch-norm counters load too.
    old = tmp_path / "old.pth"
    torch.save({k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}, old)
    load_inception(old, check_hash=False)


def test_bad_weight_files(tmp_path):
    with pytest.raises(GenforgeError, match="download"):
        load_inception(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(GenforgeError, match="not an FID Inception-v3 state dict"):
        load_inception(wrong, check_hash=False)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GenforgeError, match="cannot be read"):
        load_inception(garbage, check_hash=False)
