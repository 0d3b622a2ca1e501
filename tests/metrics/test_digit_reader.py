"""The digit reader of the built-in captioned digits (issue 15, item 6): trained on the crops that
`measure` cuts from a tiny set written by make_captions, it reads them far above chance, its file is
a digit evaluator for the agreement numbers, and data without the built-in attributes is refused."""

from __future__ import annotations

import json

import pytest
import torch

from genforge.cli import main
from genforge.data import load_dataset
from genforge.data.make_captions import make_captions
from genforge.errors import GenforgeError
from genforge.metrics.digit_reader import digit_crops, random_affine, read_accuracy, rendered_crops, train_digit_reader
from genforge.metrics.features import load_evaluator
from genforge.metrics.text_agreement import evaluate_text_data, evaluate_text_run, train_text_evaluator


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    """400 training and 100 test images of the built-in set (R-precision needs 100 test captions)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("digits") / "captions"
    make_captions(out, train=400, test=100, seed=3)
    return out


@pytest.fixture(scope="module")
def reader(captions, tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "reader.pt"
    train_digit_reader(f"folder:{captions}", out=path, epochs=10, batch_size=64, lr=5e-3, mix_source=None, device="cpu",
                       log=None)
    return path


def test_the_crops_are_one_per_digit_with_the_stored_digits(captions):
    data = load_dataset(f"folder:{captions}", split="train")
    crops = digit_crops(data)
    attributes = [row["attributes"] for row in data.extras["metadata"]]
    assert crops.crops.shape == (sum(a["count"] for a in attributes), 1, 28, 28) and crops.crops.dtype == torch.uint8
    assert crops.labels.tolist() == [d for a in attributes for d in a["digits"]]
    assert torch.bincount(crops.owners).tolist() == [a["count"] for a in attributes]
    assert any(a["count"] == 2 for a in attributes) and not crops.heldout.any()  # no held-out pair in train


def test_the_reader_reads_its_training_crops_far_above_chance(captions, reader):
    loaded = load_evaluator(reader)
    assert (loaded.image_size, loaded.channels, loaded.num_classes) == (28, 1, 10)
    train = digit_crops(load_dataset(f"folder:{captions}", split="train"))
    scores = read_accuracy(loaded.network, train)
    assert scores["crops"] >= 0.6, scores  # chance: 0.1
    # The saved test accuracy is the crop accuracy on the unseen test split's digits, above chance too.
    assert 0.3 <= loaded.test_accuracy <= 1


def test_read_accuracy_counts_an_image_only_when_every_digit_is_right():
    from genforge.metrics.digit_reader import DigitCrops

    class Fixed(torch.nn.Module):  # predicts the crop's mean pixel value as the class
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot((x.mean((1, 2, 3)) * 255).round().long(), 10).float()

    crops = torch.tensor([1, 2, 3, 4], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 28, 28).contiguous()
    split = DigitCrops(crops, torch.tensor([1, 2, 0, 4]), torch.tensor([0, 1, 1, 2]), torch.tensor([False, True, True]))
    scores = read_accuracy(Fixed(), split)  # image 0 right, image 1 half right (wrong), image 2 right
    assert scores == pytest.approx({"crops": 0.75, "images": 2 / 3, "seen": 1.0, "heldout": 0.5})


def test_rendered_source_digits_are_cut_like_the_set_and_keep_their_labels():
    from genforge.data import load_dataset as load

    crops, labels = rendered_crops("mnist-5k", None, 48, limit=30)
    assert crops.shape == (60, 1, 28, 28) and crops.dtype == torch.uint8
    assert labels.tolist() == [d for d in load("mnist-5k", split="train").labels[:30].tolist() for _ in range(2)]
    assert (crops.flatten(1).amax(1) == 255).all()  # every rendering found its digit (measure scales to 255)
    with pytest.raises(GenforgeError, match="mnist-5k or mnist"):
        rendered_crops("cifar10", None, 48)


def test_random_affine_without_motion_is_the_identity_and_keeps_the_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(random_affine(x, g, degrees=0, scale=0, shift=0), x, atol=1e-5)
    moved = random_affine(x, g)
    assert moved.shape == x.shape and not torch.allclose(moved, x)


def test_the_reader_is_the_digit_evaluator_of_the_agreement_numbers(captions, reader, tmp_path):
    from genforge.config import replace
    from genforge.run import load_run
    from genforge.training import train
    from tests.conftest import tiny_config

    text = tmp_path / "text.pt"
    train_text_evaluator(f"folder:{captions}", out=text, epochs=1, batch_size=64, device="cpu", log=None)
    real = evaluate_text_data(f"folder:{captions}", None, text, reader, n=100, log=lambda *_: None)
    ceiling, floor = real["rows"]["real, own captions (ceiling)"], real["rows"]["real, shuffled captions (floor)"]
    assert ceiling["seen"]["colour"] == 1.0 and ceiling["heldout"]["colour"] == 1.0
    digit = (ceiling["seen"]["digit"] + ceiling["heldout"]["digit"]) / 2
    assert digit >= 0.4 and digit > (floor["seen"]["digit"] + floor["heldout"]["digit"]) / 2 + 0.2, (ceiling, floor)
    # A run on the same data (one training step, no sample rows) gets the same real rows.
    cfg = tiny_config("tdiffusion-unet", steps=1, data={"name": f"folder:{captions}"},
                      train={"batch_size": 2, "sample_every": 1000, "checkpoint_every": 1, "precision": "fp32"},
                      diffusion={"channel_mult": "1,2", "attention_resolutions": "24", "steps": 2},
                      text={"width": 8, "layers": 1, "heads": 2, "context": 8})
    train(replace(cfg, model={"width": 8}), tmp_path / "run", quiet=True)
    result = evaluate_text_run(load_run(tmp_path / "run"), text, reader, n=100, guidances=(), log=lambda *_: None)
    assert json.dumps(result["rows"], sort_keys=True) == json.dumps(real["rows"], sort_keys=True)


def test_data_without_the_built_in_attributes_is_one_line_exit_2(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "text": "a square"}) + "\n"
                                                   for i in range(4)), encoding="utf-8")
    out = tmp_path / "reader.pt"
    assert main(["train-evaluator", "--digits", "--data", f"folder:{folder}", "--out", str(out), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genforge: error:") and "no built-in digit attributes" in err and "make-captions" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and not out.exists()


def test_mix_flags_without_digits_and_text_with_digits_are_one_line_exit_2(tmp_path, capsys):
    for argv, message in ((["--mix-source", "mnist-5k"], "belong to --digits"), (["--text", "--digits"], "pass one of")):
        assert main(["train-evaluator", "--data", "mnist-5k", "--out", str(tmp_path / "e.pt"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genforge: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e.pt").exists()
