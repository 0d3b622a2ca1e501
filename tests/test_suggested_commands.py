"""Commands suggested by error messages work as printed (issue 18)."""

from __future__ import annotations

import re
import shlex

from genforge.cli import main
from tests.test_readme_commands import write_fixtures


def test_no_evaluator_message_suggests_a_command_that_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mnist = write_fixtures(tmp_path)["../shared/data/mnist"]
    train = ["train", "--model", "vae-mlp", "--data", "mnist", "--data-root", mnist, "--out", "runs/vae",
             "--steps", "2", "--batch-size", "8", "--quiet"]
    assert main(train) == 0
    evaluate = ["eval", "--run", "runs/vae", "--n", "40"]
    assert main(evaluate) == 2
    err = capsys.readouterr().err
    command = re.search(r"`(genforge train-evaluator [^`]*)`", err).group(1)
    assert f"--data-root {mnist}" in command
    assert main(shlex.split(command)[1:] + ["--epochs", "1"]) == 0  # as printed, only shorter
    assert main(evaluate) == 0


def test_conditional_vae_tools_suggest_only_what_they_accept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_fixtures(tmp_path)
    assert main(["train", "--model", "cvae-mlp", "--out", "runs/cvae", "--steps", "2", "--quiet",
                 "--set", "model.width=8"]) == 0
    capsys.readouterr()
    assert main(["encode", "--run", "runs/cvae", "--input", "digits", "--out", "z.npy"]) == 2
    err = capsys.readouterr().err
    assert "--class K" in err and "0..9" in err
    assert main(["encode", "--run", "runs/cvae", "--input", "digits", "--out", "z.npy", "--class", "3"]) == 0
    assert main(["vae-tools", "--run", "runs/cvae", "--input", "digits", "--out", "tools"]) == 2
    assert main(["vae-tools", "--run", "runs/cvae", "--input", "digits", "--out", "tools", "--class", "3"]) == 0
    assert main(["sample", "--run", "runs/cvae", "--class", "all", "--n", "20", "--out", "all.png"]) == 0
