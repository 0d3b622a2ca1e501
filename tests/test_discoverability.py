"""Every setting discoverable without reading the source (issue 18)."""

from __future__ import annotations

import dataclasses

import yaml

from genforge.cli import build_parser, main
from genforge.config import PRESETS, SECTIONS


def test_info_settings_lists_every_field_with_type_default_and_docstring(capsys):
    assert main(["info", "--settings"]) == 0
    out = capsys.readouterr().out
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"\n{section}.{f.name}  (" in out, f"{section}.{f.name}"
    assert "(undocumented)" not in out
    assert "train.steps  (int, default" in out and "model.class_head  (str, default 'projection')" in out


def test_info_preset_shows_its_settings_without_data(capsys):
    assert main(["info", "--preset", "cgan-mnist"]) == 0  # names the full mnist, which is not on disk here
    out = capsys.readouterr().out
    own, resolved = out.split("# all settings")
    assert yaml.safe_load(own) == PRESETS["cgan-mnist"]
    assert "class_head: both" in resolved
    assert main(["info", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_config_help_lists_every_section():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(section in text for section in SECTIONS)


def test_dry_run_says_whether_it_would_resume_and_from_which_step(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--model", "vae-mlp", "--out", "run", "--set", "model.width=8", "--set", "train.checkpoint_every=2",
            "--batch-size", "8", "--quiet"]
    assert main(base + ["--steps", "3", "--dry-run"]) == 0
    assert "# would start a new run in run (0 of 3 steps)" in capsys.readouterr().out
    assert main(base + ["--steps", "3"]) == 0
    capsys.readouterr()
    assert main(base + ["--steps", "6", "--dry-run"]) == 0
    assert "# would resume run from step 3 (of 6)" in capsys.readouterr().out
    assert main(base + ["--steps", "3", "--dry-run"]) == 0
    assert "finished (step 3 of 3)" in capsys.readouterr().out
    assert main(base + ["--steps", "3", "--lr", "0.5", "--dry-run"]) == 0
    assert "would refuse: run holds a run with other settings (train.lr" in capsys.readouterr().out


def test_every_subcommand_has_a_description_line():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]
    helps = {action.dest: action.help for action in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values())
