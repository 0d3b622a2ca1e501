"""Three tiny trained runs, one per served family (conditional GAN, VAE, pix2pix), shared by the web tests."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_config
from tests.families.pix2pix.pix2pix_helpers import write_inversion_pairs


@pytest.fixture(scope="session")
def web_run_dirs(tmp_path_factory):
    import genforge

    root = tmp_path_factory.mktemp("web-runs")
    pairs = write_inversion_pairs(root / "pairs", size=16, n_train=16, n_test=4)
    configs = {
        "cgan": tiny_config("cdcgan", steps=2),
        "vae": tiny_config("vae-mlp", steps=2),
        "p2p": tiny_config("pix2pix", steps=2, model={"width": 4}, data={"name": f"paired:{pairs}"},
                           train={"batch_size": 4}, pix2pix={"n_layers": 1}),
        "diff": tiny_config("cdiffusion-unet", steps=2, model={"width": 8}, data={"image_size": 16},
                            diffusion={"channel_mult": "1,2", "steps": 4}),
    }
    for name, cfg in configs.items():
        genforge.train(cfg, root / name, quiet=True)
    return {name: root / name for name in configs}


@pytest.fixture(scope="session")
def web_runs(web_run_dirs):
    import genforge

    return {name: genforge.load_run(path) for name, path in web_run_dirs.items()}
