"""A pretrained text encoder read from a local folder in Hugging Face format: the text tower of a
CLIP model (Radford et al. 2021) or the encoder of a T5 model (Raffel et al. 2020, as Imagen uses
it, Saharia et al. 2022), through the optional `transformers` library (genforge[hf]).

It takes the place of the encoder trained from scratch (encoder.py) behind the same interface
(`tokenize`, `encode`, `forward(ids, mask)`, `context`), so the diffusion family's U-Net, step and
sampler use it unchanged: the U-Net cross-attends to its last hidden state (its key and value
layers take the encoder's width, so no projection is needed) and pools the mean of the real
tokens' states. The folder is only ever read (`local_files_only=True`, no remote code); a run keeps
its own copy (`save_copy`: safetensors weights, config, tokenizer files), so sampling needs neither
the original folder nor a flag, and a frozen encoder stays out of the checkpoints.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import GenforgeError
from ..imageio import atomic_folder
from .tokenizer import Encoded

RUN_FOLDER = "text-encoder"
"""Where a run keeps its copy of the pretrained encoder (RUN/text-encoder/)."""

MODEL_CLASSES = {"clip": "CLIPTextModel", "clip_text_model": "CLIPTextModel", "t5": "T5EncoderModel"}
"""The model types of config.json read here, and the transformers class that holds their text
encoder (a whole CLIP model or T5 model gives its text tower or encoder; the rest is not loaded)."""

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model")
INSTALL = "pip install -c constraints.txt 'genforge[hf]'"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise GenforgeError(f"text.pretrained needs the transformers library, which is not installed; install it with: "
                            f"{INSTALL}, or drop text.pretrained to train a text encoder from scratch") from None
    return transformers


@contextmanager
def _quiet(transformers):
    """transformers' progress bars and load reports off while loading or saving (they are not ours to show)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def check_folder(folder: str | Path) -> Path:
    """The folder, if it holds a config, weights and tokenizer files; otherwise a one-line GenforgeError."""
    folder = Path(folder)
    fix = "give text.pretrained a folder written by save_pretrained (config.json, weights, tokenizer files)"
    if not folder.is_dir():
        raise GenforgeError(f"text encoder folder {folder} does not exist; {fix}")
    if not (folder / "config.json").is_file():
        raise GenforgeError(f"text encoder folder {folder} has no config.json; {fix}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise GenforgeError(f"text encoder folder {folder} has no weights ({', '.join(WEIGHT_FILES[::2])}); {fix}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise GenforgeError(f"text encoder folder {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                            "save the tokenizer into it too (tokenizer.save_pretrained(folder))")
    return folder


def load_pretrained(folder: str | Path, context: int, trainable: bool = False) -> PretrainedTextEncoder:
    """The CLIP text model or T5 encoder saved in `folder`, with its tokenizer, read without any
    download and without executing code from the folder."""
    folder = check_folder(folder)
    transformers = _transformers()
    try:
        with _quiet(transformers):
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            kind = MODEL_CLASSES.get(config.model_type)
            if kind is None:
                raise GenforgeError(f"{folder} holds a {config.model_type!r} model; text.pretrained reads CLIP text models "
                                    f"and T5 encoders ({', '.join(MODEL_CLASSES)}); give one of those")
            model = getattr(transformers, kind).from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"cannot load the text encoder in {folder} ({reason}); "
                            "check that it is a complete save_pretrained folder of a CLIP or T5 model") from None
    if tokenizer.pad_token is None:  # padding is masked everywhere, so any token does; the end token is usual
        if tokenizer.eos_token is None:
            raise GenforgeError(f"the tokenizer in {folder} has neither a padding nor an end token; "
                                "set pad_token in its tokenizer_config.json")
        tokenizer.pad_token = tokenizer.eos_token
    return PretrainedTextEncoder(model, tokenizer, context, trainable)


class PretrainedTextEncoder(nn.Module):
    """Token ids (N, T) and their mask -> the model's last hidden state (N, T, width), zero at
    padded positions (padding is also masked in the model's own attention).

    Frozen (trainable=False): the model stays in eval mode (no dropout, as when it was pretrained),
    runs without gradients, and its weights are left out of the state dict, since the run keeps
    them once in its copy of the folder; loading a state dict then expects them absent."""

    def __init__(self, model: nn.Module, tokenizer, context: int, trainable: bool = False):
        super().__init__()
        self.model, self.tokenizer, self.trainable = model, tokenizer, trainable
        self.width = int(model.config.hidden_size)
        limit = getattr(model.config, "max_position_embeddings", None)  # CLIP's 77; T5's positions are relative
        self.context = min(context, limit) if limit else context
        if not trainable:
            self.model.requires_grad_(False).eval()
            self.register_state_dict_post_hook(_drop_frozen)
            self.register_load_state_dict_post_hook(_frozen_not_missing)

    def fit(self, captions) -> None:
        """Nothing to fit: the tokenizer came with the model (the from-scratch encoder builds one here)."""

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def tokenize(self, texts: list[str], warn: bool = False) -> Encoded:
        """Token ids and mask of `texts`, padded to the context, on the encoder's device; with warn, one
        warning line for words the tokenizer does not know and one for prompts cut to the context."""
        texts = list(texts)
        with _quiet(_transformers()):  # its own note on sequences over the model's length: ours follows
            full = self.tokenizer(texts, return_offsets_mapping=bool(self.tokenizer.unk_token_id is not None))
        truncated = [text for text, ids in zip(texts, full["input_ids"]) if len(ids) > self.context]
        unknown: list[str] = []
        if self.tokenizer.unk_token_id is not None:
            for text, ids, spans in zip(texts, full["input_ids"], full["offset_mapping"]):
                unknown += [text[a:b] for i, (a, b) in zip(ids, spans)
                            if i == self.tokenizer.unk_token_id and text[a:b] not in unknown]
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context,
                               return_tensors="pt")
        if warn and unknown:
            print(f"genforge: warning: {len(unknown)} word(s) unknown to the pretrained tokenizer: "
                  f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}", file=sys.stderr, flush=True)
        if warn and truncated:
            print(f"genforge: warning: {len(truncated)} prompt(s) longer than the encoder's context of "
                  f"{self.context} tokens were cut (e.g. {truncated[0][:60]!r})", file=sys.stderr, flush=True)
        device = next(self.model.parameters()).device
        return Encoded(batch["input_ids"].to(device), batch["attention_mask"].bool().to(device), unknown, truncated)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden * mask[..., None]

    def encode(self, texts: list[str], warn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, T, width) and mask (N, T) of `texts`."""
        encoded = self.tokenize(texts, warn)
        return self(encoded.ids, encoded.mask), encoded.mask

    def save_copy(self, target: str | Path) -> Path:
        """Write the model (safetensors weights and config.json) and its tokenizer files into the folder
        `target`, atomically: into a temporary folder beside it, each file fsync'ed, then renamed."""
        transformers = _transformers()
        with atomic_folder(target) as tmp, _quiet(transformers):
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return Path(target)


def _drop_frozen(module: PretrainedTextEncoder, state_dict: dict, prefix: str, local_metadata) -> None:
    """A frozen encoder's weights stay out of state dicts (the run's copy of the folder holds them)."""
    for key in [k for k in state_dict if k.startswith(prefix + "model.")]:
        del state_dict[key]


def _frozen_not_missing(module: PretrainedTextEncoder, incompatible) -> None:
    """...so they are not missing when one is loaded (the weights came from the folder)."""
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if ".model." not in f".{k}"]
