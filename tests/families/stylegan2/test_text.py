"""Text-to-image StyleGAN2 (tstylegan2, issue 15): the prompt reaches the generator, D's loss holds
the matching-aware term on real images with mismatched captions (Reed et al. 2016), the text encoder
steps with D only, truncation moves toward each prompt's own mean w, and a tiny run trained on a
captioned folder samples by prompt through load_run and the CLI. Exact resume and the contract's
other checks: tests/families/test_contract.py (registry-driven, tstylegan2 included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genforge.cli import main
from genforge.errors import GenforgeError
from genforge.families import registry
from genforge.families.contract import SampleRequest
from genforge.families.stylegan2 import step as sg2_step
from genforge.imageio import to_signed
from genforge.run import load_run
from genforge.runtime import Precision
from genforge.text.encoder import pool
from genforge.training import train
from genforge.training.batches import BatchSampler
from genforge.training.optim import make_optimizers
from tests.families.diffusion.test_text_to_image import write_captioned

CPU = torch.device("cpu")
RED, BLUE = "a red square on the left", "a blue square on the right"


def config(data, steps: int = 2, model: str = "tstylegan2", **stylegan2):
    """A tiny tstylegan2 on the 16x16 captioned squares (padded to 32 by stylegan2.fit), no ADA."""
    return registry.resolve_config(overrides=[{
        "model": {"name": model, "width": 4, "latent_dim": 8},
        "data": {"name": f"folder:{data}"},
        "text": {"width": 8, "layers": 1, "heads": 2, "context": 8},
        "train": {"steps": steps, "batch_size": 4, "log_every": 1, "sample_every": 1000, "checkpoint_every": 2,
                  "device": "cpu", "precision": "fp32", "lr": 0.0025, "betas": [0.0, 0.99]},
        "stylegan2": {"channel_max": 8, "mapping_layers": 2, "pl_every": 2, "r1_every": 2, "ada": False,
                      "ema_halflife_images": 100, **stylegan2}}])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_captioned(tmp_path_factory.mktemp("t2i-sg2") / "data")


@pytest.fixture(scope="module")
def run_dir(data_dir):
    out = data_dir.parent / "run"
    train(config(data_dir), out, quiet=True)
    return out


def fitted(cfg):
    """cfg resolved on its data, and new networks with the tokenizer fitted (as training setup does)."""
    data = registry.load_data(cfg)
    cfg = registry.resolve_model(cfg, data)
    torch.manual_seed(0)
    nets = registry.build_networks(cfg)
    registry.family_of(cfg).fit_networks(nets, data, cfg)
    return cfg, nets, data


def test_the_prompt_conditions_the_generator(data_dir):
    cfg, nets, _ = fitted(config(data_dir))
    family = registry.family_of(cfg)

    def draw(prompt, seed=0):
        return registry.sample(family, nets, SampleRequest(3, seed, options={"prompt": prompt}), cfg)

    red = draw(RED)
    assert torch.equal(red, draw([RED] * 3))  # one prompt, or the same one per image
    assert not torch.allclose(red, draw(BLUE), atol=1e-4)  # same latents, other caption: other images
    mixed = draw([RED, BLUE, RED])
    assert torch.equal(mixed[0], red[0]) and torch.equal(mixed[2], red[2])
    with pytest.raises(GenforgeError, match="draws images from a prompt; give one"):
        registry.sample(family, nets, SampleRequest(2, 0), cfg)


def test_d_loss_holds_real_images_with_the_captions_rolled_by_one(data_dir, monkeypatch):
    # The spy recomputes D on the real images under the batch's captions rolled by one, with D and
    # the text encoder as they are when the step calls the loss (before D's update).
    cfg, nets, data = fitted(config(data_dir))
    seen = {}
    original = sg2_step.discriminator_loss

    def spy(fake_logits, real_logits, mismatched_logits=None):
        real = to_signed(batch.images)
        encoder = nets["text_encoder"]
        encoded = encoder.tokenize(batch.captions)
        text = pool(encoder(encoded.ids, encoded.mask), encoded.mask)
        with torch.no_grad():
            seen["own"] = nets["discriminator"](real, text)
            seen["rolled"] = nets["discriminator"](real, text.roll(1, 0))
        seen["real"], seen["mismatched"] = real_logits.detach(), mismatched_logits.detach()
        seen["loss"] = original(fake_logits, real_logits, mismatched_logits).detach()
        seen["fake"] = fake_logits.detach()
        return original(fake_logits, real_logits, mismatched_logits)

    monkeypatch.setattr(sg2_step, "discriminator_loss", spy)
    batch = BatchSampler(data, 4, 0, CPU)(0)
    assert len(set(batch.captions)) > 1
    torch.manual_seed(0)
    losses = registry.family_of(cfg).step(nets, make_optimizers(cfg, nets), batch, cfg, Precision(CPU, "fp32", list(nets)),
                                          registry.family_of(cfg).make_state(cfg))
    assert torch.allclose(seen["real"], seen["own"], atol=1e-5)
    assert torch.allclose(seen["mismatched"], seen["rolled"], atol=1e-5)
    assert not torch.allclose(seen["mismatched"], seen["real"], atol=1e-4)  # another caption, another logit
    expected = (F.softplus(seen["fake"]).mean() + F.softplus(seen["mismatched"]).mean()) / 2 \
        + F.softplus(-seen["real"]).mean()
    assert torch.allclose(losses["loss_d"], expected) and torch.allclose(seen["loss"], expected)
    assert torch.allclose(losses["d_mismatched"], F.softplus(seen["mismatched"]).mean())


def test_discriminator_loss_by_hand():
    fake, real, wrong = torch.tensor([0.0, 1.0]), torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.5])
    sp = lambda x: float(np.log1p(np.exp(x)))  # noqa: E731
    plain = (sp(0) + sp(1)) / 2 + (sp(-2) + sp(1)) / 2
    assert sg2_step.discriminator_loss(fake, real).item() == pytest.approx(plain, rel=1e-6)
    matching = ((sp(0) + sp(1)) / 2 + sp(0.5)) / 2 + (sp(-2) + sp(1)) / 2
    assert sg2_step.discriminator_loss(fake, real, wrong).item() == pytest.approx(matching, rel=1e-6)
    assert torch.equal(sg2_step.mismatched(torch.arange(4)), torch.tensor([3, 0, 1, 2]))


def test_the_text_encoder_steps_with_d_main_only(data_dir):
    cfg, nets, data = fitted(config(data_dir))
    family = registry.family_of(cfg)
    opts = make_optimizers(cfg, nets)
    hooked = []
    precision = Precision(CPU, "fp32", list(nets), grad_hook=lambda name, opt: hooked.append(name))
    torch.manual_seed(0)
    family.step(nets, opts, BatchSampler(data, 4, 0, CPU)(0), cfg, precision, family.make_state(cfg))
    # step 0: G main, G's path length, D main (+ the encoder), D's R1.
    assert hooked == ["generator", "generator", "discriminator", "text_encoder", "discriminator"]


def test_truncation_moves_toward_the_prompts_own_mean_w(data_dir):
    cfg, nets, _ = fitted(config(data_dir))
    family = registry.family_of(cfg)
    generator = nets["generator"]

    def draw(prompt, seed, psi):
        return registry.sample(family, nets, SampleRequest(2, seed, truncation=psi, options={"prompt": prompt}), cfg)

    # psi = 0 is the centre itself: every seed gives one image per prompt, and the prompts differ
    # (toward the unconditional w_avg both prompts would give the same image).
    assert torch.equal(draw(RED, 0, 0.0), draw(RED, 5, 0.0))
    assert not torch.allclose(draw(RED, 0, 0.0), draw(BLUE, 0, 0.0), atol=1e-4)
    # The centre is the mean w of the prompt over the fixed latents.
    from genforge.families.stylegan2.sample import CENTRE_SAMPLES, CENTRE_SEED, condition_centres, prompt_condition
    from genforge.nn.latents import latent_batch

    text, index = prompt_condition(nets, [RED, BLUE, RED], 3, cfg)
    assert index.tolist() == [0, 1, 0]
    z = latent_batch(CENTRE_SAMPLES, generator.z_dim, CENTRE_SEED, CPU)
    with torch.no_grad():
        by_hand = generator.mapping(z, text[1:2].expand(CENTRE_SAMPLES, -1)).mean(0)
    assert torch.allclose(condition_centres(generator, text)[1], by_hand, atol=1e-5)


def test_the_run_samples_by_prompt_with_its_saved_tokenizer(run_dir):
    run = load_run(run_dir)
    assert {"red", "blue", "left", "right"} <= set(run.networks["text_encoder"].tokenizer.vocab)
    a = run.sample(4, seed=1, prompt=RED)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, run.sample(4, seed=1, prompt=RED))
    assert not torch.equal(a, run.sample(4, seed=1, prompt=BLUE))
    assert not torch.equal(a, run.sample(4, seed=1, prompt=RED, truncation=0.5))
    with pytest.raises(GenforgeError, match="interpolation cannot take a prompt yet"):
        run.interpolate([1, 2])


def test_a_safetensors_export_samples_by_prompt_as_the_run_does(run_dir, tmp_path):
    assert main(["export", "--run", str(run_dir), "--format", "safetensors", "--out", str(tmp_path / "e")]) == 0
    exported, run = load_run(tmp_path / "e"), load_run(run_dir)
    assert set(exported.networks) == {"generator", "text_encoder"}  # no discriminator
    assert torch.equal(exported.sample(2, seed=3, prompt=BLUE, truncation=0.6),
                       run.sample(2, seed=3, prompt=BLUE, truncation=0.6))


def test_cli_sample_with_prompt_and_prompts_file(run_dir, tmp_path, cli):
    done = cli("sample", "--run", run_dir, "--prompt", RED, "--n", "4", "--truncation", "0.7", "--out",
               tmp_path / "red.png", check=True)
    assert "wrote" in done.stdout and Image.open(tmp_path / "red.png").size == (2 * 34 + 2, 2 * 34 + 2)  # 2x2 grid
    (tmp_path / "p.txt").write_text(f"{RED}\n{BLUE}\n", encoding="utf-8")
    assert main(["sample", "--run", str(run_dir), "--prompts", str(tmp_path / "p.txt"), "--n", "3",
                 "--out", str(tmp_path / "rows.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "rows.png")).shape[:2] == (2 * 34 + 2, 3 * 34 + 2)
    assert (tmp_path / "rows.txt").read_text(encoding="utf-8") == f"row 1: {RED}\nrow 2: {BLUE}\n"


def test_bad_input_is_one_line_exit_2(run_dir, data_dir, tmp_path, capsys):
    train(config(data_dir, steps=1, model="stylegan2"), tmp_path / "plain", quiet=True)  # captions unused
    for args, message in (
            (["sample", "--run", str(tmp_path / "plain"), "--prompt", RED, "--out", str(tmp_path / "x.png")],
             "is not conditioned on text, so it takes no prompt; drop --prompt"),
            (["sample", "--run", str(run_dir), "--out", str(tmp_path / "x.png")], "draws images from a prompt"),
            (["sample", "--run", str(run_dir), "--prompt", RED, "--guidance", "2", "--out", str(tmp_path / "x.png")],
             "takes no sampling option guidance"),
            (["export", "--run", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "e")],
             "exports as safetensors only"),
            (["stylegan2-tools", "--run", str(run_dir), "--out", str(tmp_path / "t")], "cannot take a prompt yet"),
            (["train", "--model", "tstylegan2", "--data", "mnist-5k", "--out", str(tmp_path / "r"), "--steps", "1"],
             "conditioned on text but dataset mnist-5k has none")):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    assert not any((tmp_path / name).exists() for name in ("x.png", "e", "t", "r"))
