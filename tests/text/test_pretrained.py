"""A pretrained Hugging Face text encoder from a local folder (issue 15, item 3, optional part), tested
with tiny randomly initialised CLIP and T5 models and a word-level tokenizer made here, saved with
save_pretrained into a temporary folder: training with it frozen and fine-tuned, the run's own copy
(sampling and resuming after the original folder is gone), checkpoints without the frozen weights,
padding and truncation, and the one-line errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from genforge.cli import main
from genforge.config import replace
from genforge.errors import GenforgeError
from genforge.rundir import list_checkpoints, load_checkpoint
from genforge.text import pretrained
from tests.families.diffusion.test_text_to_image import text_config, write_captioned

WORDS = ["a", "red", "blue", "square", "on", "the", "left", "right", ":"]


def save_tiny(folder, kind: str = "clip"):
    """A tiny random CLIP text model or T5 encoder and a word-level tokenizer (begin and end tokens
    added around each text, as CLIP's), saved as a Hugging Face folder."""
    transformers = pytest.importorskip("transformers", reason="the optional hf extra is not installed (pip install genforge[hf])")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                             special_tokens=[("<bos>", 2), ("<eos>", 3)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>",
                                                bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(0)
    if kind == "clip":
        config = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                             pad_token_id=0, bos_token_id=2, eos_token_id=3)
        model = transformers.CLIPTextModel(config)
    else:
        config = transformers.T5Config(vocab_size=len(vocab), d_model=12, d_kv=6, d_ff=24, num_layers=1, num_heads=2,
                                       pad_token_id=0, eos_token_id=3, decoder_start_token_id=0)
        model = transformers.T5EncoderModel(config)
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def pretrained_config(data, folder, steps: int = 2, **text):
    cfg = text_config(data, steps=steps)
    return replace(cfg, text={"pretrained": str(folder), **text})


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A tdiffusion-unet trained 2 steps with a frozen tiny CLIP, whose original folder is then deleted."""
    from genforge.training import train

    base = tmp_path_factory.mktemp("hf")
    clip = save_tiny(base / "clip")
    original = pretrained.load_pretrained(clip, context=8).model.state_dict()
    data = write_captioned(base / "data")
    train(pretrained_config(data, clip), base / "run", quiet=True)
    shutil.rmtree(clip)
    return base, data, original


def test_the_run_keeps_its_own_copy_and_samples_without_the_original_folder(frozen_run):
    from genforge.run import load_run

    base, _, original = frozen_run
    copy = base / "run" / pretrained.RUN_FOLDER
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in copy.iterdir()}
    assert not [p for p in (base / "run").iterdir() if p.name.endswith(".tmp")]  # written atomically
    run = load_run(base / "run")
    encoder = run.networks["text_encoder"]
    assert isinstance(encoder, pretrained.PretrainedTextEncoder) and not encoder.trainable
    for key, value in original.items():  # frozen: the pretrained weights, untouched by training
        assert torch.equal(encoder.model.state_dict()[key], value), key
    a = run.sample(2, seed=3, prompt="a red square on the left")
    assert a.shape == (2, 3, 16, 16)
    assert not torch.equal(a, run.sample(2, seed=3, prompt="a blue square on the right"))
    code = main(["sample", "--run", str(base / "run"), "--prompt", "a blue square on the right", "--n", "2",
                 "--out", str(base / "grid.png")])
    assert code == 0 and (base / "grid.png").is_file()


def test_a_frozen_encoder_stays_out_of_the_checkpoint(frozen_run):
    base, _, original = frozen_run
    payload = load_checkpoint(list_checkpoints(base / "run")[-1][1])  # weights_only=True
    kept = payload["networks"]["text_encoder"]
    assert not [k for k in kept if k.startswith("model.")]
    assert "text_encoder" not in payload["optimizers"] and "text_encoder" not in payload["ema"]
    assert payload["config"]["text"]["pretrained"].endswith("clip")  # the setting as given, for the record


def test_resume_is_exact_from_the_runs_copy(frozen_run):
    from genforge.training import train

    base, data, _ = frozen_run
    folder = base / "clip"  # deleted: the resumed run builds from its own copy
    straight, resumed = base / "straight", base / "resumed"
    shutil.copytree(base / "run", resumed, ignore=shutil.ignore_patterns("*.lock"))
    train(pretrained_config(data, folder, steps=4), resumed, quiet=True)
    save_tiny(folder)  # the same seeded weights again, for the uninterrupted run
    train(pretrained_config(data, folder, steps=4), straight, quiet=True)
    shutil.rmtree(folder)
    a = load_checkpoint(list_checkpoints(straight)[-1][1])["networks"]["denoiser"]
    b = load_checkpoint(list_checkpoints(resumed)[-1][1])["networks"]["denoiser"]
    assert list_checkpoints(resumed)[-1][0] == 4
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_trains_the_encoder_and_checkpoints_it(tmp_path):
    from genforge.run import load_run
    from genforge.training import train

    clip = save_tiny(tmp_path / "clip")
    before = pretrained.load_pretrained(clip, context=8).model.state_dict()
    train(pretrained_config(write_captioned(tmp_path / "data"), clip, train_pretrained=True), tmp_path / "run", quiet=True)
    payload = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert "text_encoder" in payload["optimizers"] and "text_encoder" in payload["ema"]
    live = {k.removeprefix("model."): v for k, v in payload["networks"]["text_encoder"].items()}
    assert any(not torch.equal(live[k], v) for k, v in before.items())  # it trained
    shutil.rmtree(clip)
    run = load_run(tmp_path / "run")
    assert run.networks["text_encoder"].trainable
    assert run.sample(1, seed=0, prompt="a red square").shape == (1, 3, 16, 16)


def test_a_fine_tuned_t5_encoder_trains_samples_and_exports(tmp_path):
    from genforge.export import export_run
    from genforge.run import load_exported, load_run
    from genforge.training import train

    t5 = save_tiny(tmp_path / "t5", kind="t5")
    train(pretrained_config(write_captioned(tmp_path / "data"), t5, train_pretrained=True), tmp_path / "run", quiet=True)
    run = load_run(tmp_path / "run")
    assert run.networks["text_encoder"].width == 12
    assert run.networks["denoiser"].text_pool.in_features == 12  # the U-Net attends at the encoder's width
    images = run.sample(1, seed=0, prompt="left: blue")
    assert images.shape == (1, 3, 16, 16)
    export_run(run, tmp_path / "export")  # T5's tied embedding is written once per name
    assert torch.allclose(load_exported(tmp_path / "export").sample(1, seed=0, prompt="left: blue"), images, atol=1e-6)


def test_padding_is_masked_and_long_prompts_are_cut_with_a_warning(tmp_path, capsys):
    encoder = pretrained.load_pretrained(save_tiny(tmp_path / "clip"), context=6).eval()
    assert encoder.context == 6
    emb, mask = encoder.encode(["a red square", "a red square on the left : blue"], warn=True)
    assert mask[0].tolist() == [True] * 5 + [False]  # <bos> a red square <eos>, padded
    assert torch.all(emb[0, 5] == 0) and mask[1].all()
    assert "1 prompt(s) longer than the encoder's context of 6 tokens were cut" in capsys.readouterr().err
    wide = pretrained.load_pretrained(tmp_path / "clip", context=12).eval()
    wide_emb, _ = wide.encode(["a red square"])
    assert torch.allclose(wide_emb[0, :5], emb[0, :5], atol=1e-6)  # the padding changes nothing
    encoder.encode(["a purple square"], warn=True)
    assert "unknown to the pretrained tokenizer: purple" in capsys.readouterr().err
    assert pretrained.load_pretrained(tmp_path / "clip", context=100).context == 16  # the model's own limit


def test_a_missing_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = write_captioned(tmp_path / "data")
    code = main(["train", "--model", "tdiffusion-unet", "--data", f"folder:{data}", "--steps", "1",
                 "--set", f"text.pretrained={tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("genforge: error: text encoder folder") and "does not exist; give text.pretrained" in err
    assert not (tmp_path / "run").exists()


def test_incomplete_folders_name_what_is_missing(tmp_path):
    clip = save_tiny(tmp_path / "clip")
    (clip / "tokenizer.json").unlink()
    (clip / "tokenizer_config.json").unlink()
    with pytest.raises(GenforgeError, match="has no tokenizer files"):
        pretrained.load_pretrained(clip, context=8)
    (clip / "model.safetensors").unlink()
    with pytest.raises(GenforgeError, match="has no weights"):
        pretrained.load_pretrained(clip, context=8)
    (clip / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (clip / "model.safetensors").write_bytes(b"")
    (clip / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(GenforgeError, match="text.pretrained reads CLIP text models and T5 encoders|cannot load"):
        pretrained.load_pretrained(clip, context=8)


def test_settings_that_cannot_work_are_refused(tmp_path):
    from tests.conftest import tiny_config

    with pytest.raises(GenforgeError, match="takes no text; use --model tdiffusion-unet"):
        tiny_config("diffusion-unet", text={"pretrained": str(tmp_path)})
    with pytest.raises(GenforgeError, match="text.train_pretrained fine-tunes a pretrained encoder"):
        tiny_config("tdiffusion-unet", text={"train_pretrained": True})


def test_without_transformers_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(GenforgeError, match=r"needs the transformers library, which is not installed; .*genforge\[hf\]"):
        pretrained.load_pretrained(tmp_path, context=8)


def test_a_safetensors_export_carries_the_encoder(frozen_run, tmp_path):
    from genforge.export import export_run
    from genforge.run import load_exported, load_run

    base, _, _ = frozen_run
    run = load_run(base / "run")
    export = export_run(run, tmp_path / "export")
    assert pretrained.RUN_FOLDER in export.files and (tmp_path / "export" / pretrained.RUN_FOLDER / "config.json").is_file()
    exported = load_exported(tmp_path / "export")
    prompt = "a red square on the right"
    assert torch.allclose(exported.sample(2, seed=5, prompt=prompt), run.sample(2, seed=5, prompt=prompt), atol=1e-6)
    export_run(run, tmp_path / "export", force=True)  # replaced, not refused nor doubled
    assert load_exported(tmp_path / "export").sample(1, seed=0, prompt=prompt).shape == (1, 3, 16, 16)
