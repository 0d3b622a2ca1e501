"""Text-to-image diffusion (issue 15): a tiny run on captioned images trained through train(),
sampled by prompt through load_run and the CLI; guidance 0 is the conditional model; the pooled
caption reaches the noise embedding; the tokenizer travels in the checkpoint; bad prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.cli import main
from genforge.conditioning import Condition
from genforge.config import replace
from genforge.errors import GenforgeError
from genforge.families.diffusion.networks import UNet
from genforge.families.diffusion.objectives import denoise
from genforge.families.diffusion.sample import make_denoiser
from genforge.run import load_run
from genforge.training import train
from tests.conftest import tiny_config

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def write_captioned(root, n: int = 16):
    """n 16x16 RGB squares, red or blue, left or right, captioned in metadata.jsonl."""
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        colour, side = list(COLOURS)[i % 2], ("left", "right")[i // 2 % 2]
        image = np.zeros((16, 16, 3), dtype=np.uint8)
        image[4:12, (1 if side == "left" else 9):(7 if side == "left" else 15)] = COLOURS[colour]
        Image.fromarray(image).save(root / f"{i:02d}.png")
        rows.append({"file_name": f"{i:02d}.png", "text": [f"a {colour} square on the {side}", f"{side}: {colour}"]})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return root


def text_config(data: str, steps: int = 2):
    cfg = tiny_config("tdiffusion-unet", steps=steps, data={"name": f"folder:{data}"},
                      train={"batch_size": 4, "sample_every": 1000, "checkpoint_every": 2, "precision": "fp32"},
                      diffusion={"channel_mult": "1,2", "attention_resolutions": "8", "steps": 2, "cond_dropout": 0.2},
                      text={"width": 8, "layers": 1, "heads": 2, "context": 8})
    return replace(cfg, model={"width": 8})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("t2i")
    out = base / "run"
    train(text_config(write_captioned(base / "data")), out, quiet=True)
    return out


def test_the_run_samples_by_prompt_with_its_saved_tokenizer(run_dir, capsys):
    run = load_run(run_dir)
    vocab = run.networks["text_encoder"].tokenizer.vocab
    assert {"red", "blue", "left", "right", "square"} <= set(vocab)  # built from the training captions
    a = run.sample(3, seed=1, prompt="a red square on the left")
    b = run.sample(3, seed=1, prompt=["a red square on the left"] * 3)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, run.sample(3, seed=1, prompt="a blue square on the right"))
    run.sample(2, seed=0, prompt="a purple square")
    assert "read as <unk>: purple" in capsys.readouterr().err
    with pytest.raises(GenforgeError, match="give one, e.g. --prompt"):
        run.sample(2, seed=0)
    with pytest.raises(GenforgeError, match="3 prompts for 2 images"):
        run.sample(2, seed=0, prompt=["a", "b", "c"])


def test_guidance_zero_is_the_conditional_model_and_guidance_uses_the_null_caption(run_dir):
    run = load_run(run_dir)
    net, encoder = run.networks["denoiser"], run.networks["text_encoder"]
    text, mask = encoder.encode(["a red square on the left", "left: blue"])
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor(1.5)
    d = run.config.diffusion
    conditional = denoise(net, x, sigma, Condition(text=text, text_mask=mask), d)
    null = denoise(net, x, sigma, Condition(text=text, text_mask=torch.zeros_like(mask)), d)
    cond = Condition(text=text, text_mask=mask)
    assert torch.equal(make_denoiser(net, cond, run.config, 0.0)(x, sigma), conditional)
    assert torch.allclose(make_denoiser(net, cond, run.config, 3.0)(x, sigma), 4 * conditional - 3 * null, atol=1e-5)
    assert not torch.allclose(conditional, null)


def test_the_pooled_caption_enters_the_noise_embedding_and_a_dropped_one_pools_to_zero():
    torch.manual_seed(0)
    net = UNet(1, 8, 8, (1, 2), 1, (), 0.0, context_dim=6).eval()  # no attention: only the pooled path
    x, level = torch.randn(2, 1, 8, 8), torch.tensor([0.3])
    text = torch.randn(2, 3, 6)
    keep = torch.ones(2, 3, dtype=torch.bool)
    assert (net(x, level, text=text, text_mask=keep) - net(x, level, text=-text, text_mask=keep)).abs().max() > 1e-3
    none = torch.zeros_like(keep)
    assert torch.allclose(net(x, level, text=text, text_mask=none), net(x, level, text=-text, text_mask=none))
    padded = torch.cat([text, torch.randn(2, 2, 6)], 1)
    mask = torch.cat([keep, torch.zeros(2, 2, dtype=torch.bool)], 1)
    assert torch.allclose(net(x, level, text=padded, text_mask=mask), net(x, level, text=text, text_mask=keep), atol=1e-5)


def test_cli_prompts_file_one_row_per_prompt_written_beside_the_grid(run_dir, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a red square on the left\n\nleft: blue\n", encoding="utf-8")
    code = main(["sample", "--run", str(run_dir), "--prompts", str(tmp_path / "p.txt"), "--n", "3",
                 "--out", str(tmp_path / "g.png"), "--guidance", "2"])
    assert code == 0
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape[:2] == (2 * 18 + 2, 3 * 18 + 2)  # 2 rows of 3 images of 16 px, 2 px padding
    assert (tmp_path / "g.txt").read_text(encoding="utf-8") == "row 1: a red square on the left\nrow 2: left: blue\n"
    capsys.readouterr()


def test_prompt_on_a_model_without_text_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "plain"
    cfg = tiny_config("diffusion-unet", steps=1, train={"batch_size": 4, "checkpoint_every": 1, "sample_every": 1000,
                                                         "precision": "fp32"},
                      diffusion={"channel_mult": "1,2", "attention_resolutions": "", "steps": 1})
    train(replace(cfg, model={"width": 8}), out, quiet=True)
    code = main(["sample", "--run", str(out), "--prompt", "a red 7", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not conditioned on text, so it takes no prompt; drop --prompt" in err
    assert not (tmp_path / "x.png").exists()


def test_a_text_model_on_uncaptioned_data_is_refused_before_anything_is_written(tmp_path):
    cfg = tiny_config("tdiffusion-unet", steps=1, diffusion={"cond_dropout": 0.1})
    with pytest.raises(GenforgeError, match="conditioned on text but dataset mnist-5k has none; use a dataset with captions"):
        train(cfg, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
