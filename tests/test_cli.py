"""The CLI end to end: train, sample, info, resume after SIGKILL, bad input.

Through a subprocess only where a real process matters: one smoke run of the installed entry
point (test_train_sample_info) and the signal tests (SIGKILL, SIGTERM, SIGINT). Everything else
calls genforge.cli.main() in this process: the same parsing, error handling and exit status as
the console script, without a fresh interpreter per command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from genforge.cli import build_parser, main
from genforge.training import checkpoint as ckpt
from tests.conftest import ROOT

TINY = ["--model", "dcgan", "--data", "mnist-5k", "--batch-size", "16", "--device", "cpu",
        "--set", "model.width=8", "--set", "model.latent_dim=8", "--set", "train.log_every=10"]


@pytest.fixture
def genforge(capsys, tmp_path, monkeypatch):
    """Run genforge.cli.main(ARGS) in this process from tmp_path (relative paths land there, as with
    the `cli` fixture); returns a CompletedProcess (status, stdout, stderr). With check=True a
    non-zero exit status fails the test."""
    monkeypatch.chdir(tmp_path)

    def run(*args, check: bool = False) -> subprocess.CompletedProcess:
        capsys.readouterr()  # start from empty buffers
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        proc = subprocess.CompletedProcess(args, status, captured.out, captured.err)
        if check and status != 0:
            raise AssertionError(f"genforge {' '.join(map(str, args))} failed ({status}):\n{proc.stderr}")
        return proc

    return run


def all_commands(parser, prefix=()):
    """Every (sub)command path of the parser, e.g. ('data', 'info')."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from all_commands(sub, (*prefix, name))


def test_help_lists_every_command_with_examples(capsys):
    commands = list(all_commands(build_parser()))
    assert {("train",), ("sample",), ("info",), ("eval",), ("data", "info")} <= set(commands)
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in commands:
        if len(command) == 1:
            assert command[0] in top, command
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out, command


def test_train_sample_info(cli, tmp_path):
    """The smoke run: the installed entry point (python -m genforge) in a fresh process."""
    out = cli("train", *TINY, "--steps", "20", "--out", "run", "--set", "train.sample_every=10", check=True)
    assert "run: run (step 20)" in out.stdout
    assert "samples:" in out.stdout
    cli("sample", "--run", "run", "--n", "16", "--seed", "0", "--out", "grid.png", check=True)
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 grid of 28px with 2px padding
        assert image.mode == "L"
    cli("sample", "--run", "run", "--n", "16", "--seed", "0", "--out", "again.png", check=True)
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "again.png").read_bytes()  # same seed, same images
    cli("sample", "--run", "run", "--n", "5", "--separate", "--out", "each", check=True)
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [f"sample-{i:05d}.png" for i in range(5)]
    info = cli("info", "--run", "run", check=True).stdout
    assert "step 20 of 20" in info and "generator:" in info


def test_dry_run_prints_resolved_config_and_writes_nothing(genforge, tmp_path):
    out = genforge("train", *TINY, "--steps", "7", "--out", "run", "--dry-run", check=True).stdout
    assert "steps: 7" in out and "image_size: 28" in out and "latent_dim: 8" in out
    assert not (tmp_path / "run").exists()


def test_config_file_with_overrides(genforge, tmp_path):
    (tmp_path / "c.toml").write_text('[model]\nname = "vae-mlp"\n[train]\nsteps = 5\nlr = 0.01\n')
    out = genforge("train", "--config", "c.toml", "--lr", "0.002", "--out", "r", "--dry-run", check=True).stdout
    assert "name: vae-mlp" in out and "lr: 0.002" in out and "steps: 5" in out
    (tmp_path / "c.yaml").write_text("model:\n  name: gan-mlp\ntrain:\n  steps: 9\n")
    out = genforge("train", "--config", "c.yaml", "--out", "r", "--dry-run", check=True).stdout
    assert "name: gan-mlp" in out and "steps: 9" in out


def command(out: str, steps: int, quiet: bool = True) -> list[str]:
    return [sys.executable, "-m", "genforge", "train", *TINY, "--steps", str(steps), "--out", out,
            "--set", "train.checkpoint_every=10", *(["--quiet"] if quiet else [])]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def test_sigkill_then_rerun_is_bit_identical(tmp_path):
    """Kill -9 mid-training, rerun the same command: the end state equals an uninterrupted run's."""
    steps = 400
    subprocess.run(command("full", steps), cwd=tmp_path, env=env(), check=True, timeout=600)
    proc = subprocess.Popen(command("killed", steps), cwd=tmp_path, env=env())
    deadline = time.time() + 300
    while time.time() < deadline:
        found = ckpt.list_checkpoints(tmp_path / "killed")
        if found and found[-1][0] >= 30:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.list_checkpoints(tmp_path / "killed")[-1][0]
    assert killed_at < steps, "the run finished before it could be killed; raise steps"
    subprocess.run(command("killed", steps), cwd=tmp_path, env=env(), check=True, timeout=600)
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "full")[-1][1])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "killed")[-1][1])
    assert a["step"] == b["step"] == steps
    for name in a["networks"]:
        for key, value in a["networks"][name].items():
            assert torch.equal(value, b["networks"][name][key]), (name, key)
    assert a["ema"].keys() == b["ema"].keys() == {"generator"}
    for key, value in a["ema"]["generator"]["model"].items():
        assert torch.equal(value, b["ema"]["generator"]["model"][key]), key
    assert a["ema"]["generator"]["num_updates"] == b["ema"]["generator"]["num_updates"] == steps
    steps_logged = [int(line.split('"step": ')[1].split(",")[0])
                    for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged)), "metrics.jsonl repeats steps after resume"


@pytest.mark.parametrize("sig,code,times", [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 1), (signal.SIGTERM, 143, 2)])
def test_signal_saves_checkpoint_and_exits_cleanly(tmp_path, sig, code, times):
    """times=2: one stop request delivered twice at once (a process-group kill under timeout or
    torchrun) still gets its checkpoint."""
    proc = subprocess.Popen(command("run", 100000, quiet=False), cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.list_checkpoints(tmp_path / "run"):
        time.sleep(0.05)
    for _ in range(times):
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "Traceback" not in stderr
    # The step the run stopped at, as the run itself reports it: the message to the user and the
    # last metrics.jsonl record (the loop reports the window before the stopping checkpoint).
    said = re.findall(rf"{sig.name}: checkpoint saved at step (\d+); rerun the same command to resume", stdout)
    assert len(said) == 1, stdout
    stopped_at = int(said[0])
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == stopped_at, (logged, stopped_at)
    assert stopped_at >= 10  # the signal was sent once the step-10 checkpoint existed
    # A checkpoint exists at exactly that step, and it holds that step.
    last = ckpt.list_checkpoints(tmp_path / "run")[-1]
    assert last[0] == stopped_at
    payload = ckpt.load_checkpoint(last[1])
    assert payload["step"] == stopped_at
    assert payload["ema"]["generator"]["num_updates"] == stopped_at


# --- bad input: one line, exit 2, nothing destroyed ---------------------------------------------------

def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genforge: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "nope"], ["unknown model 'nope'", "dcgan"]),
    (["train", "--data", "nope"], ["unknown dataset 'nope'", "mnist-5k"]),
    (["train", "--lr", "-1"], ["train.lr must be positive"]),
    (["train", "--batch-size", "0"], ["train.batch_size must be positive"]),
    (["train", "--steps", "ten"], ["invalid int value"]),
    (["train", "--set", "train.lr"], ["section.key=value"]),
    (["train", "--set", "train.nope=1"], ["unknown key(s) ['nope']"]),
    (["train", "--set", "train.steps=abc"], ["train.steps must be an integer"]),
    (["train", "--preset", "nope"], ["unknown preset"]),
    (["train", "--config", "missing.yaml"], ["does not exist"]),
    (["train", "--data", "mnist", "--data-root", "empty"], ["no train-images-idx3-ubyte"]),
    (["train", "--batch-size", "99999", "--out", "big"], ["larger than the dataset"]),
    (["train", "--device", "cuda:0"] if not torch.cuda.is_available() else ["train", "--device", "tpu"], ["device"]),
    (["sample", "--run", "nowhere"], ["not a genforge run directory"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_bad_input(genforge, tmp_path, args, fragments):
    (tmp_path / "empty").mkdir()
    assert_user_error(genforge(*args), *fragments)
    assert sorted(os.listdir(tmp_path)) == ["empty"]  # nothing written: no run directory, no "big"


def test_bad_config_file(genforge, tmp_path):
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    assert_user_error(genforge("train", "--config", "bad.yaml"), "not valid YAML")
    (tmp_path / "bad.toml").write_text("model = \n")
    assert_user_error(genforge("train", "--config", "bad.toml"), "not valid TOML")


def test_conflicting_run_directory_is_left_alone(genforge, tmp_path):
    genforge("train", *TINY, "--steps", "10", "--out", "run", check=True)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    proc = genforge("train", *TINY, "--steps", "10", "--out", "run", "--lr", "0.5")
    assert_user_error(proc, "other settings", "train.lr")
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after


def test_foreign_directory_is_left_alone(genforge, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    assert_user_error(genforge("train", *TINY, "--out", "mine"), "not a genforge run")
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path / "mine")) == ["thesis.txt"]


def test_truncated_checkpoint_through_cli(genforge, tmp_path):
    genforge("train", *TINY, "--steps", "10", "--out", "run", check=True)
    path = ckpt.list_checkpoints(tmp_path / "run")[-1][1]
    path.write_bytes(path.read_bytes()[:1000])
    assert_user_error(genforge("sample", "--run", "run"), "truncated, corrupt")
    assert_user_error(genforge("train", *TINY, "--steps", "20", "--out", "run"), "truncated, corrupt")


def test_idx_with_wrong_magic(genforge, tmp_path):
    root = tmp_path / "idx"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / name).write_bytes(b"\x00\x00\x09\x03" + bytes(20))
    assert_user_error(genforge("train", "--data", "mnist", "--data-root", "idx"), "wrong magic number",
                      "train-images-idx3-ubyte")


def test_unconditional_model_sampled_with_class(genforge, tmp_path):
    genforge("train", *TINY, "--steps", "10", "--out", "run", check=True)
    assert_user_error(genforge("sample", "--run", "run", "--class", "3"), "unconditional")
    assert_user_error(genforge("sample", "--run", "run", "--class", "all"), "class-conditional")
