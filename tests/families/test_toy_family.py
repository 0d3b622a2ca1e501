"""A new family needs no edit to the loop: a toy family, defined here in about 30 lines, is
registered and trained through the real train(), resumed exactly (its own state included) and
sampled through load_run."""

from __future__ import annotations

import torch
from torch import nn

import genforge
from genforge.families import registry
from genforge.families.contract import Family, FamilyState, ModelSpec
from genforge.rundir import list_checkpoints, load_checkpoint
from tests.conftest import tiny_config


# --- the toy family: learns the mean training image; sampling adds seeded noise ---------------------
class MeanImage(nn.Module):
    def __init__(self, channels: int, size: int):
        super().__init__()
        self.image = nn.Parameter(torch.zeros(1, channels, size, size))


class Seen(FamilyState):  # family training state that must survive a resume
    def __init__(self):
        self.images = 0

    def state_dict(self):
        return {"images": self.images}

    def load_state_dict(self, state):
        self.images = state["images"]


def toy_step(nets, opts, batch, cfg, precision, state):
    loss = (nets["mean"].image - batch.images.float() / 255).pow(2).mean()
    opts["mean"].zero_grad(set_to_none=True)
    precision.backward_step("mean", loss, opts["mean"])
    state.images += len(batch.images)
    return {"loss": loss.detach()}


def toy_sample(nets, request, cfg):
    g = torch.Generator().manual_seed(request.seed)
    image = nets["mean"].image.detach()
    noise = 0.05 * torch.randn((request.n, *image.shape[1:]), generator=g)
    return (image + noise).clamp(0, 1)


TOY = Family(name="toy", step=toy_step, sample=toy_sample, make_state=lambda cfg: Seen(),
             averaged=lambda cfg: {"mean": 0.9}, inference=("mean",))
TOY_MODELS = {"toy-mean": ModelSpec(TOY, lambda cfg: {"mean": MeanImage(cfg.model.channels, cfg.model.image_size)})}
# ---------------------------------------------------------------------------------------------------


def test_toy_family_trains_resumes_and_samples_through_the_real_loop(tmp_path):
    registry.register_family(TOY, TOY_MODELS)
    try:
        cfg = tiny_config("toy-mean", steps=30, train={"lr": 0.05, "betas": [0.9, 0.999]})
        straight = genforge.train(cfg, tmp_path / "straight", quiet=True)
        genforge.train(tiny_config("toy-mean", steps=10, train={"lr": 0.05, "betas": [0.9, 0.999]}),
                       tmp_path / "resumed", quiet=True)
        genforge.train(cfg, tmp_path / "resumed", quiet=True)

        a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])
        b = load_checkpoint(list_checkpoints(tmp_path / "resumed")[-1][1])
        assert straight.step == 30 and a["family"] == "toy"
        assert a["family_state"] == b["family_state"] == {"images": 30 * 16}
        assert torch.equal(a["networks"]["mean"]["image"], b["networks"]["mean"]["image"])
        assert torch.equal(a["ema"]["mean"]["model"]["image"], b["ema"]["mean"]["model"]["image"])

        # It learned: the mean image moved from 0 towards the data's mean intensity.
        learned = a["networks"]["mean"]["image"].mean().item()
        assert 0.05 < learned, learned
        assert (tmp_path / "straight" / "samples" / "step-0000030.png").is_file()

        run = genforge.load_run(tmp_path / "straight")
        images = run.sample(5, seed=1)
        assert run.family == "toy" and images.shape == (5, 1, 28, 28)
        assert torch.equal(images, run.sample(5, seed=1)) and not torch.equal(images, run.sample(5, seed=2))
    finally:
        registry.unregister_family("toy")
    assert "toy-mean" not in registry.MODELS
