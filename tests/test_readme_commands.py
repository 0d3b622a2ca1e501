"""Every `genforge` command the README prints works: parsed as printed, then run in a tiny form.

The tiny form changes only sizes: the README's data folders are replaced by small ones the test
writes (real mnist-5k digits in the real formats), and training steps, sample counts and importance
samples are shortened. A flag that does not exist, a missing --data-root, a command that needs a
file no earlier README command makes: each fails here.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from genforge.cli import build_parser, main
from tests.data.datafiles import idx_bytes, png_bytes, zip_folder

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The genforge command lines of the README's sh blocks, continuation lines joined, comments dropped;
    `a && b` gives two commands."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("genforge "):
                    commands.append(part)
    return commands


def readme_yaml() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)


def test_the_readme_prints_commands():
    commands = readme_commands()
    assert len(commands) > 25
    assert any(c.startswith("genforge train ") for c in commands) and any(c.startswith("genforge eval ") for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_as_printed(command):
    build_parser().parse_args(shlex.split(command)[1:])  # a GenforgeError names the bad flag


# What the tiny form changes, per command (appended flags win over the printed ones in argparse).
SHORTEN = {
    "train": ["--steps", "3", "--batch-size", "4", "--set", "train.log_every=1", "--set", "train.sample_every=2",
              "--set", "train.checkpoint_every=2", "--set", "model.width=8", "--quiet"],
    "eval": ["--n", "60", "--nll-k", "4", "--nll-images", "20"],
    "train-evaluator": ["--epochs", "1"],
    "make-pairs": ["--limit", "30"],
    "make-captions": ["--train", "24", "--test", "100"],  # R-precision needs 100 test captions
    "project": ["--steps", "2"],
}


def write_fixtures(work: Path) -> dict[str, str]:
    """Small stand-ins for the README's data folders; returns {printed path: stand-in path}."""
    from genforge.data import load_dataset

    digits = load_dataset("mnist-5k", split="train")
    order = np.arange(len(digits.images))[::45][:100]  # 100 digits, every class
    images = digits.images[order, 0].numpy()
    labels = digits.labels[order].numpy().astype(np.uint8)
    mnist = work / "tiny-mnist"
    mnist.mkdir()
    for prefix, sl in (("train", slice(0, 80)), ("t10k", slice(80, 100))):
        (mnist / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[sl])))
        (mnist / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[sl])))
    photos = work / "my-photos"
    folder = work / "tiny-cifar"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            (folder / name / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    photos.mkdir()
    for i in range(6):
        (photos / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)))
    zip_folder(folder, work / "tiny-cifar.zip")
    (work / "digits").mkdir()
    for i in range(4):
        (work / "digits" / f"{i}.png").write_bytes(png_bytes(images[i]))
    (work / "photo.png").write_bytes(png_bytes(images[0]))  # the diffusion editing examples' photo and mask
    mask = np.zeros((28, 28), dtype=np.uint8)
    mask[:, 14:] = 255
    (work / "mask.png").write_bytes(png_bytes(mask))
    (work / "prompts.txt").write_text("a large red 7 in the top left corner\nupper right: a small 3, blue\n")
    replacements = {"../shared/data/mnist": str(mnist), "../shared/data/cifar10-jpeg/train.zip": str(work / "tiny-cifar.zip")}
    yaml_text = readme_yaml()
    for printed, local in replacements.items():
        yaml_text = yaml_text.replace(printed, local)
    (work / "my.yaml").write_text(yaml_text)
    return replacements


def takes_steps(argv: list[str]) -> bool:
    """The run named by --run samples with a number of steps (a diffusion model's sampler)."""
    from genforge.families.registry import model_spec
    from genforge.rundir import read_saved_config

    run = argv[argv.index("--run") + 1]
    return "steps" in model_spec(read_saved_config(Path(run)).model.name).family.sample_options


def test_readme_commands_run_in_a_tiny_form(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    replacements = write_fixtures(tmp_path)
    # `make demo` (not a genforge command) makes runs/demo-cgan, which the serve and export examples use.
    assert main(["train", "--preset", "demo-cgan", "--out", "runs/demo-cgan", *SHORTEN["train"]]) == 0
    # `genforge serve` loads its runs and builds the app, then would serve until stopped: record that call.
    served = []
    if importlib.util.find_spec("uvicorn") is not None:
        import uvicorn

        monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    skipped = []
    for command in readme_commands():
        for printed, local in replacements.items():
            command = command.replace(printed, local)
        argv = shlex.split(command)[1:]
        if argv[:2] == ["data", "download"]:
            skipped.append(command)  # needs the internet; tests/data/test_data_download.py serves the files locally
            continue
        if argv[0] == "serve" and not served and importlib.util.find_spec("uvicorn") is None:
            skipped.append(command)  # the web extra is not installed
            continue
        argv += SHORTEN.get(argv[0] if argv[0] != "data" else argv[1], [])
        if "--text-evaluator" in argv:  # text-to-image agreement: 100 prompts (R-precision ranks among 100)
            argv += ["--n", "100", *(["--steps", "1"] if takes_steps(argv) else [])]
        if argv[0] == "sample" and ("--prompt" in argv or "--prompts" in argv) and takes_steps(argv):
            argv += ["--steps", "2"]
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 0, f"{command}\n -> status {status}: {err}"
    assert len(skipped) <= 2
    if importlib.util.find_spec("uvicorn") is not None:
        assert served and served[0]["host"] == "127.0.0.1"
