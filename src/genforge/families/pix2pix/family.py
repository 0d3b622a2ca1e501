"""The pix2pix family behind the contract (Isola et al. 2017): generate the target image given a
source image (cond.image). Networks: networks.py; step: step.py; inference: translate.py."""

from __future__ import annotations

import torch
from torch import nn

from ...conditioning import Condition
from ...data.paired import prepare_pairs
from ...errors import GenforgeError
from ..contract import Family, Graph, ModelSpec, SampleRequest
from . import networks
from .step import pix2pix_step
from .translate import comparison_grid, evaluate_pairs, translate_batch


def sample(nets, request: SampleRequest, cfg):
    if request.cond.image is None:
        raise GenforgeError(f"model {cfg.model.name} translates images; it cannot sample from noise: "
                            "use genforge translate --run RUN --input IMAGES --out DIR")
    return translate_batch(nets["generator"], request.cond.image)


def preview_request(cfg, data, device):
    """8 training pairs spread over the dataset, shown as input | output | target rows."""
    shown = torch.linspace(0, len(data) - 1, min(8, len(data))).long()
    return SampleRequest(len(shown), cond=Condition(image=data.images[shown].to(device)),
                         targets=data.targets[shown].to(device))


def preview(nets, request: SampleRequest, cfg):
    outputs = sample(nets, request, cfg)
    return comparison_grid(request.cond.image, outputs, request.targets), 3


def test_metrics(nets, cfg, test, device):
    """L1, PSNR and SSIM of the translations of the test split, and of the identity mapping."""
    return evaluate_pairs(nets["generator"], test.images, test.targets, device)


class Translate(nn.Module):
    """source images (N, C, H, W) in [0, 1] -> translated images in [0, 1], as translate_batch (dropout off)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.generator(source * 2 - 1).float().add(1).mul(0.5).clamp(0, 1)


def graphs(nets, cfg) -> dict[str, Graph]:
    m = cfg.model
    return {"translate": Graph(Translate(nets["generator"]).eval(),
                               {"source": torch.rand(2, m.channels, m.image_size, m.image_size)})}


PIX2PIX = Family(
    name="pix2pix",
    section="pix2pix",
    step=pix2pix_step,
    sample=sample,
    from_noise=False,
    learning_rates=lambda cfg: {"discriminator": cfg.gan.lr_d} if cfg.gan.lr_d else {},
    prepare_data=lambda data, cfg: prepare_pairs(data, cfg.pix2pix.direction, cfg.data.name),
    preview_request=preview_request,
    preview=preview,
    test_metrics=test_metrics,
    describe_test=lambda v: (f"test L1 {v['l1']:.4f} PSNR {v['psnr']:.2f} dB SSIM {v['ssim']:.4f} "
                             f"(identity mapping: L1 {v['identity_l1']:.4f})"),
    graphs=graphs,
    serves=("image",),
)

# Image-to-image: generator(source) -> image, discriminator(source, image); settings in section pix2pix.
MODELS = {
    "pix2pix": ModelSpec(PIX2PIX, lambda cfg: networks.build(cfg.model, cfg.pix2pix), 0, 64, ("image",)),
}
