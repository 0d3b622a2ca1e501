"""--threads and the automatic choice on a busy machine (issue 18)."""

from __future__ import annotations

import pytest
import torch

from genforge.cli import COMPUTING_COMMANDS, build_parser, main
from genforge.errors import GenforgeError
from genforge.runtime import auto_threads, set_threads


@pytest.mark.parametrize("cores, busy, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 12.0, 1), (8, 3.0, 5), (8, 2.6, 5), (1, 0.0, 1)])
def test_auto_threads_uses_the_free_cores(cores, busy, expected):
    assert auto_threads(cores, busy) == expected


def test_every_computing_command_takes_threads():
    parser = build_parser()
    for name in COMPUTING_COMMANDS:
        argv = name.split() + ["--help"]
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    for command in ("train", "sample", "eval", "translate", "train-evaluator"):
        assert "--threads" in parser._subparsers._group_actions[0].choices[command].format_help()


def test_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
        with pytest.raises(GenforgeError, match="--threads takes a positive number"):
            set_threads("0")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr("genforge.runtime.busy_cores", lambda: 7.0)
        monkeypatch.setattr("genforge.runtime.cpu_count", lambda: 2)
        said = []
        assert set_threads("auto", log=said.append) == 1 and torch.get_num_threads() == 1
        assert len(said) == 1 and "using 1 torch thread" in said[0]
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert set_threads("auto") == 2  # the user's OMP_NUM_THREADS choice (torch read it at start) wins
    finally:
        torch.set_num_threads(before)


def test_cli_threads_flag(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["data", "info", "digits", "--no-preview", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["data", "info", "digits", "--no-preview", "--threads", "many"]) == 2
        assert "--threads takes a positive number or auto" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
