"""What a pretrained text encoder (text.pretrained) costs a text-to-image training step, against the
encoder trained from scratch (the baseline), in the same run, alternating the cases.

The pretrained encoders have the architectures of CLIP ViT-B/32's text tower and of t5-small's
encoder (transformers' default CLIPTextConfig and T5Config) with random weights: the same shapes and
so the same cost as the real weights, which cannot be downloaded here. Each is saved to a temporary
folder with a word-level tokenizer and read back through text.pretrained, as a user's folder would be.
The step is the tdiffusion-captions preset's (48x48 RGB, batch 32), on random images and captions.

    python benchmarks/bench_text_encoders.py                  # under 2 minutes on one thread
    python benchmarks/bench_text_encoders.py --repeats 5 --steps 3

Prints per case: parameters of the text encoder, the size of the copy a run keeps (model.safetensors),
the median seconds per training step, and its ratio to the from-scratch baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genforge.conditioning import Batch  # noqa: E402
from genforge.config import replace  # noqa: E402
from genforge.families.registry import build_networks, model_spec, resolve_config  # noqa: E402
from genforge.runtime import Precision  # noqa: E402
from genforge.training.optim import make_optimizers  # noqa: E402

WORDS = ("a large small big tiny red green blue yellow white 0 1 2 3 4 5 6 7 8 9 "
         "in the top bottom left right corner on background").split()


def save_encoder(kind: str, folder: Path) -> Path:
    """A random-weight encoder of the real architecture, with a word-level tokenizer, in `folder`."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    transformers.utils.logging.disable_progress_bar()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    model = (transformers.CLIPTextModel(transformers.CLIPTextConfig()) if kind == "clip-b32"
             else transformers.T5EncoderModel(transformers.T5Config()))
    model.save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>").save_pretrained(folder)
    return folder


def make_case(kind: str, folder: Path | None, batch_size: int):
    cfg = resolve_config(preset="tdiffusion-captions", overrides=[{"train": {"batch_size": batch_size, "precision": "fp32"}}])
    if folder is not None:
        cfg = replace(cfg, text={"pretrained": str(folder)})
    cfg = replace(cfg, model={"image_size": 48, "channels": 3, "width": cfg.model.width or 32})
    torch.manual_seed(0)
    nets = build_networks(cfg)
    opts = make_optimizers(cfg, nets)
    precision = Precision(torch.device("cpu"), "fp32", list(nets))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, 48, 48), dtype=torch.uint8, generator=generator)
    picks = torch.randint(0, len(WORDS), (batch_size, 9), generator=generator).tolist()
    captions = [" ".join(WORDS[i] for i in row) for row in picks]
    encoder = nets["text_encoder"]
    params = sum(p.numel() for p in encoder.parameters())
    size = (folder / "model.safetensors").stat().st_size if folder is not None else 0
    step = model_spec(cfg.model.name).family.step

    def one(s: int):
        step(nets, opts, Batch(images, step=s, captions=captions), cfg, precision)
    return one, params, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per case (alternating), median reported")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"scratch (baseline)": make_case("scratch", None, args.batch_size)}
        for kind in ("clip-b32", "t5-small"):
            cases[f"{kind}, frozen"] = make_case(kind, save_encoder(kind, Path(tmp) / kind), args.batch_size)
        times = {name: [] for name in cases}
        for name, (one, _, _) in cases.items():
            one(0)  # warm-up
        for _ in range(args.repeats):
            for name, (one, _, _) in cases.items():
                start = time.perf_counter()
                for s in range(args.steps):
                    one(s + 1)
                times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["scratch (baseline)"])
    load = os.getloadavg()[0]
    print(f"text-to-image training step, tdiffusion-captions (48x48, batch {args.batch_size}), {args.threads} thread(s), "
          f"load average {load:.1f}, median of {args.repeats} x {args.steps} steps")
    print("| text encoder | parameters | copy in the run | s/step | vs scratch |\n|---|---|---|---|---|")
    for name, (_, params, size) in cases.items():
        median = statistics.median(times[name])
        copy = f"{size / 1e6:.0f} MB" if size else "-"
        print(f"| {name} | {params / 1e6:.2f}M | {copy} | {median:.2f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
