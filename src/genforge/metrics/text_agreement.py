"""Do generated images match their prompts? A contrastive image-text dual encoder (CLIP, Radford et
al. 2021) trained on the captioned training split, and the agreement numbers of a text-to-image run.

- R-precision (Xu et al. 2018, AttnGAN, section 4.1): for each image, its true caption is ranked
  among itself and 99 captions of other images by the dual encoder's cosine similarity; the share
  of images whose true caption comes first (chance: 1%).
- Mean cosine similarity of image and caption embeddings (CLIP-score-like, without the x100 / clip).
- FID in the features of the dual encoder's image tower (the penultimate layer), generated vs real
  test images: comparable only between runs measured with the same text-evaluator file.
- For the built-in captioned digits (genforge data make-captions), the accuracy of every attribute
  named in the prompt read from the pixels (data.make_captions.measure): colour, size, position,
  background, and the digit by a 28x28 digit classifier (a genforge evaluator file: the digit reader
  of metrics/digit_reader.py, trained on the dataset's own crops, or an MNIST classifier) on the
  digit's crop; separately on test prompts whose digit-colour pairs were seen in training and on held-out
  ones. The same numbers for real test images with their own captions (the ceiling) and with
  shuffled captions (the floor).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenforgeError
from ..text.encoder import TextEncoder
from .scores import fid_from_features

TEXT_EVALUATOR_FORMAT = "genforge-text-evaluator"
CANDIDATES = 100
"""R-precision ranks the true caption among this many (itself and 99 others)."""


class ImageTower(nn.Module):
    """Three conv blocks (conv, group norm, ReLU; stride-2 pooling after the first two), a 2x2
    average pool and a ReLU feature layer: images in [0, 1] -> features."""

    def __init__(self, channels: int, width: int = 32, feature_dim: int = 128):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]

        self.body = nn.Sequential(*block(channels, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2),
                                  *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(16 * width, feature_dim), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images * 2 - 1)


class DualEncoder(nn.Module):
    """Image and text towers projected into one `dim`-dimensional space, unit-normalised, with a
    learned temperature (CLIP's logit scale, initialised to 1 / 0.07)."""

    def __init__(self, channels: int, vocab_size: int = 1000, context: int = 24, text_width: int = 64,
                 text_layers: int = 2, width: int = 32, dim: int = 64):
        super().__init__()
        self.image_tower = ImageTower(channels, width)
        self.text_tower = TextEncoder(vocab_size, context, text_width, text_layers, heads=4 if text_width % 4 == 0 else 1)
        self.image_projection = nn.Linear(128, dim)
        self.text_projection = nn.Linear(text_width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.image_tower(images)), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit embeddings of texts: the mean of the text tower's token outputs, projected."""
        encoded = self.text_tower.tokenize(texts)
        tokens = self.text_tower(encoded.ids, encoded.mask)
        pooled = tokens.sum(1) / encoded.mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text_projection(pooled), dim=-1)


def info_nce(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021, figure 3; van den Oord et al. 2018): cross-entropy
    of the scaled cosine-similarity matrix against the diagonal, over images and over texts."""
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_embeddings @ text_embeddings.T
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@dataclass
class TextEvaluator:
    network: DualEncoder
    data: str
    image_size: int
    channels: int
    test_r_precision: float
    sha256: str = ""
    path: str = ""

    def protocol(self) -> dict:
        return {"kind": "dual-encoder", "path": self.path, "sha256": self.sha256, "data": self.data,
                "image_size": self.image_size, "channels": self.channels, "test_r_precision": self.test_r_precision}


@torch.no_grad()
def embed(network: DualEncoder, images: torch.Tensor | None = None, texts: list[str] | None = None,
          batch_size: int = 256) -> torch.Tensor:
    """Unit embeddings of uint8 or [0, 1] images, or of texts, in batches (network in eval mode)."""
    network.eval()
    device = network.logit_scale.device
    out = []
    if images is not None:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            out.append(network.embed_images(x).cpu())
    else:
        for start in range(0, len(texts), batch_size):
            out.append(network.embed_texts(texts[start:start + batch_size]).cpu())
    return torch.cat(out)


@torch.no_grad()
def image_features(network: DualEncoder, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The image tower's penultimate features (for FID) of uint8 or [0, 1] images."""
    device = network.logit_scale.device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        out.append(network.image_tower(x.float() / 255 if x.dtype == torch.uint8 else x.float()).cpu())
    return torch.cat(out).double()


def r_precision(image_embeddings: torch.Tensor, true_texts: torch.Tensor, pool: torch.Tensor, pool_owner: torch.Tensor,
                owners: torch.Tensor, seed: int = 0) -> float:
    """Share of images whose true caption embedding beats 99 embeddings drawn (seeded) from `pool`
    among captions of other images (pool_owner != the image's owner). Ties count against the image."""
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for i in range(len(image_embeddings)):
        others = torch.nonzero(pool_owner != owners[i]).flatten()
        if len(others) < CANDIDATES - 1:
            raise GenforgeError(f"R-precision needs captions of at least {CANDIDATES - 1} other images, the test split "
                                f"has {len(others)}; use a larger test split")
        pick = others[torch.randperm(len(others), generator=g)[:CANDIDATES - 1]]
        true = float(image_embeddings[i] @ true_texts[i])
        hits += bool(true > float((pool[pick] @ image_embeddings[i]).max()))
    return hits / len(image_embeddings)


def train_text_evaluator(data: str, root: str | None = None, out: str | Path | None = None, epochs: int = 10,
                         batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device: str = "auto",
                         image_size: int | None = None, channels: int | None = None, overwrite: bool = False,
                         log=print) -> TextEvaluator:
    """Train the dual encoder with InfoNCE on `data`'s captioned train split (one random caption of
    each image per step), report its R-precision on the test split, save it to `out`."""
    from ..data import load_dataset
    from ..imageio import atomic_write_bytes
    from ..runtime import resolve_device

    if epochs <= 0 or batch_size < 2 or lr <= 0:
        raise GenforgeError(f"epochs and learning rate must be positive and the batch at least 2, got {epochs}, "
                            f"{batch_size}, {lr}")
    if out is not None and Path(out).exists() and not overwrite:
        raise GenforgeError(f"{out} exists; choose another --out or pass --overwrite")
    torch_device = resolve_device(device)
    train_set = load_dataset(data, root, "train", image_size, channels)
    if not train_set.captions:
        raise GenforgeError(f"dataset {data} has no captions; the text evaluator learns from captioned images "
                            "(a .txt beside each image or a metadata.jsonl; genforge data make-captions builds one)")
    try:
        test_set = load_dataset(data, root, "test", image_size, channels)
    except GenforgeError:
        test_set = None
    torch.manual_seed(seed)
    network = DualEncoder(train_set.channels).to(torch_device)
    network.text_tower.fit(t for texts in train_set.captions for t in texts)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=0.01)
    batch_size = min(batch_size, len(train_set))
    steps_per_epoch = max(1, len(train_set) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed + 1)
    images = train_set.images.to(torch_device)
    start = time.perf_counter()
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(images), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            picks = torch.randint(0, 1 << 30, (len(idx),), generator=g).tolist()
            texts = [train_set.captions[j][p % len(train_set.captions[j])] for j, p in zip(idx.tolist(), picks)]
            loss = info_nce(network.embed_images(images[idx.to(torch_device)].float() / 255),
                            network.embed_texts(texts), network.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        if log:
            log(f"epoch {epoch + 1}/{epochs}  InfoNCE {total / steps_per_epoch:.4f}  {time.perf_counter() - start:.0f}s")
    score = float("nan")
    if test_set is not None and len(test_set) >= CANDIDATES:
        score = real_agreement(network, test_set.images, [c[0] for c in test_set.captions], seed)["r_precision"]
        if log:
            log(f"test R-precision (true caption among {CANDIDATES}) {score:.4f}")
    evaluator = TextEvaluator(network.eval().requires_grad_(False), data, train_set.image_size, train_set.channels, score)
    if out is not None:
        payload = {"format": TEXT_EVALUATOR_FORMAT, "state_dict": network.state_dict(), "data": data,
                   "image_size": train_set.image_size, "channels": train_set.channels, "test_r_precision": score}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, buffer.getvalue())
        import hashlib

        evaluator.sha256, evaluator.path = hashlib.sha256(buffer.getvalue()).hexdigest(), str(out)
    return evaluator


def load_text_evaluator(path: str | Path, device: str | torch.device = "cpu") -> TextEvaluator:
    """A file written by `genforge train-evaluator --text` (loaded with weights_only=True)."""
    from .features import file_sha256

    path = Path(path)
    if not path.is_file():
        raise GenforgeError(f"text evaluator {path} does not exist; make one with genforge train-evaluator --text "
                            f"--data DATA --out {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != TEXT_EVALUATOR_FORMAT:
            raise ValueError("not a text evaluator")
        network = DualEncoder(int(payload["channels"]))
        network.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001 - a corrupt file, another format, another version
        reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"{path} is not a usable text evaluator ({reason}); train one with "
                            "genforge train-evaluator --text") from None
    return TextEvaluator(network.to(device).eval().requires_grad_(False), str(payload["data"]),
                         int(payload["image_size"]), int(payload["channels"]), float(payload["test_r_precision"]),
                         file_sha256(path), str(path))


def real_agreement(network: DualEncoder, images: torch.Tensor, texts: list[str], seed: int = 0,
                   pool_texts: list[str] | None = None) -> dict[str, float]:
    """R-precision and mean cosine of images (uint8 or [0, 1]) with their texts; the 99 other
    candidates come from pool_texts (default: the texts themselves), owner k = image k."""
    image_embeddings, text_embeddings = embed(network, images=images), embed(network, texts=texts)
    pool_texts = pool_texts if pool_texts is not None else texts
    pool = embed(network, texts=pool_texts) if pool_texts is not texts else text_embeddings
    owners = torch.arange(len(images))
    score = r_precision(image_embeddings, text_embeddings, pool, torch.arange(len(pool_texts)), owners, seed)
    return {"r_precision": score, "cosine": float((image_embeddings * text_embeddings).sum(1).mean())}


# --- attributes of the built-in captioned digits --------------------------------------------------

ATTRIBUTES = ("digit", "colour", "size", "position", "background")


def attribute_hits(images: torch.Tensor, attributes: list[dict], digit_classifier=None) -> dict[str, list[bool]]:
    """Per attribute, whether each image shows what its attributes ask (every digit of it right)."""
    from ..data.make_captions import measure

    hits: dict[str, list[bool]] = {name: [] for name in ATTRIBUTES}
    crops, owners = [], []
    for k, (image, wanted) in enumerate(zip(images, attributes)):
        array = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)
        got = measure(array.permute(1, 2, 0).numpy(), wanted["count"])
        hits["colour"].append(got["colours"] == wanted["colours"])
        hits["size"].append(got["sizes"] == wanted["sizes"])
        hits["position"].append(got["positions"] == wanted["positions"])
        hits["background"].append(got["background"] == wanted["background"])
        crops += got["crops"]
        owners += [k] * len(got["crops"])
    if digit_classifier is not None:
        with torch.no_grad():
            x = torch.from_numpy(np.stack(crops))[:, None].float() / 255
            predicted = digit_classifier(x.to(next(digit_classifier.parameters()).device)).argmax(1).cpu().tolist()
        right = [True] * len(images)
        wanted_digits = [d for a in attributes for d in a["digits"]]
        for owner, p, d in zip(owners, predicted, wanted_digits):
            right[owner] = right[owner] and p == d
        hits["digit"] = right
    else:
        del hits["digit"]
    return hits


def _accuracies(hits: dict[str, list[bool]], select: list[bool]) -> dict[str, float]:
    return {name: float(np.mean([h for h, s in zip(values, select) if s])) if any(select) else float("nan")
            for name, values in hits.items()}


def agreement_table(images: torch.Tensor, prompts: list[str], attributes: list[dict] | None, text_evaluator: TextEvaluator,
                    digit_classifier=None, seed: int = 0, pool_texts: list[str] | None = None,
                    reference_features: torch.Tensor | None = None) -> dict:
    """Every agreement number of `images` drawn for `prompts` (see the module docstring)."""
    network = text_evaluator.network
    row = real_agreement(network, images, prompts, seed, pool_texts)
    if reference_features is not None:
        row["fid"] = fid_from_features(reference_features, image_features(network, images))
    if attributes is not None:
        hits = attribute_hits(images, attributes, digit_classifier)
        held = [bool(a.get("heldout")) for a in attributes]
        row["seen"] = _accuracies(hits, [not h for h in held])
        row["heldout"] = _accuracies(hits, held)
    return row


def _attributes_of(data, index: list[int]) -> list[dict] | None:
    """The stored attributes of the chosen images (built-in captioned digits), or None."""
    metadata = data.extras.get("metadata")
    if not metadata or not all("attributes" in metadata[i] for i in index):
        return None
    return [metadata[i]["attributes"] for i in index]


def _load_digit_evaluator(digit_evaluator: str | Path | None):
    """The digit classifier's network, checked to read 28x28 gray crops into 10 classes; None without one."""
    from .features import load_evaluator

    if not digit_evaluator:
        return None
    loaded = load_evaluator(digit_evaluator)
    if (loaded.image_size, loaded.channels, loaded.num_classes) != (28, 1, 10):
        raise GenforgeError(f"{digit_evaluator} is not a digit classifier (28x28 gray, 10 classes); make one with "
                            "genforge train-evaluator --digits --data DATA --out evaluators/DATA-digits.pt")
    return loaded.network


def _real_rows(test, train_images: torch.Tensor, evaluator: TextEvaluator, digits, n: int, seed: int,
               log=print) -> tuple[dict, dict]:
    """The ceiling and floor rows on a seeded random subset of n test images, and what the sample rows
    reuse (index, prompts, attributes, real features, the generator in its state after the draws)."""
    if not test.captions:
        raise GenforgeError(f"the test split of {test.name} has no captions; the agreement needs captioned test images")
    if n < CANDIDATES or len(test) < CANDIDATES:
        raise GenforgeError(f"R-precision ranks among {CANDIDATES} captions: --n and the test split need at least "
                            f"{CANDIDATES} images (n {n}, test split {len(test)})")
    # A seeded random subset (not evenly spaced indices: a split may alternate kinds of images).
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(test), generator=g)[:n].sort().values.tolist()
    prompts = [test.captions[i][int(torch.randint(len(test.captions[i]), (1,), generator=g))] for i in index]
    attributes = _attributes_of(test, index)
    real = test.images[index]
    train_pick = torch.randperm(len(train_images), generator=g)[:len(index)]
    real_features = image_features(evaluator.network, real)
    rows = {}
    log(f"scoring {len(index)} real test images (ceiling and floor)")
    rows["real, own captions (ceiling)"] = agreement_table(real, prompts, attributes, evaluator, digits, seed,
                                                           reference_features=image_features(evaluator.network,
                                                                                             train_images[train_pick]))
    shuffle = torch.randperm(len(index), generator=g).tolist()
    rows["real, shuffled captions (floor)"] = agreement_table(
        real, [prompts[k] for k in shuffle], [attributes[k] for k in shuffle] if attributes else None, evaluator,
        digits, seed, pool_texts=prompts)
    return rows, {"index": index, "prompts": prompts, "attributes": attributes, "real_features": real_features}


def _protocol(n: int, seed: int, evaluator: TextEvaluator, digit_evaluator) -> dict:
    from .features import file_sha256

    return {"n": n, "seed": seed, "prompts": f"one seeded caption of each of {n} test images (a seeded random subset)",
            "text_evaluator": evaluator.protocol(),
            "digit_evaluator": str(digit_evaluator) if digit_evaluator else None,
            "digit_evaluator_sha256": file_sha256(digit_evaluator) if digit_evaluator else None,
            "fid": "in the text evaluator's image features; samples and ceiling against real images (test, resp. train)"}


def evaluate_text_data(data: str, root: str | None, text_evaluator: str | Path, digit_evaluator: str | Path | None = None,
                       n: int = 500, seed: int = 0, log=print) -> dict:
    """Only the real-image rows (ceiling and floor) of `evaluate_text_run`, for a captioned dataset
    without a trained run: the same subset, prompts and numbers as a run on that data gets."""
    from ..data import load_dataset

    evaluator = load_text_evaluator(text_evaluator)
    digits = _load_digit_evaluator(digit_evaluator)
    test = load_dataset(data, root, "test", evaluator.image_size, evaluator.channels)
    train_images = load_dataset(data, root, "train", evaluator.image_size, evaluator.channels).images
    rows, used = _real_rows(test, train_images, evaluator, digits, n, seed, log)
    return {"protocol": {"data": data, **_protocol(len(used["index"]), seed, evaluator, digit_evaluator)}, "rows": rows}


def evaluate_text_run(run, text_evaluator: str | Path, digit_evaluator: str | Path | None = None, n: int = 500,
                      seed: int = 0, guidances: tuple[float, ...] = (0.0,), steps: int | None = None,
                      sampler: str | None = None, log=print) -> dict:
    """The agreement of a text-to-image run's samples with their prompts on its dataset's test split:
    one row per guidance weight, plus the real test images with their own captions (ceiling) and
    with shuffled captions (floor). The prompts are one caption (seeded choice) of n test images."""
    from ..families.registry import load_data

    cfg = run.config
    evaluator = load_text_evaluator(text_evaluator)
    if (evaluator.image_size, evaluator.channels) != (cfg.model.image_size, cfg.model.channels):
        raise GenforgeError(f"text evaluator {text_evaluator} measures {evaluator.channels}x{evaluator.image_size} "
                            f"images but the run draws {cfg.model.channels}x{cfg.model.image_size}; train one on "
                            "the run's data with genforge train-evaluator --text")
    digits = _load_digit_evaluator(digit_evaluator)
    test = load_data(cfg, split="test")
    rows, used = _real_rows(test, load_data(cfg, split="train").images, evaluator, digits, n, seed, log)
    prompts, attributes = used["prompts"], used["attributes"]
    guided = "guidance" in run.model_family.sample_options  # models without guidance get one row
    if not guided and any(w != 0 for w in guidances):
        raise GenforgeError(f"{cfg.model.name} has no classifier-free guidance; drop --guidance")
    for w in guidances if guided else (None,):
        start = time.perf_counter()
        images = run.sample(len(prompts), seed=seed, prompt=prompts, guidance=w, steps=steps, sampler=sampler)
        what = f"guidance {w:g}" if guided else ""
        log(f"drew {len(images)} images{' at ' + what if what else ''} in {time.perf_counter() - start:.0f}s "
            f"({run.last_report})")
        rows[f"samples, {what}" if guided else "samples"] = agreement_table(images, prompts, attributes, evaluator,
                                                                            digits, seed,
                                                                            reference_features=used["real_features"])
    return {"protocol": {"run": str(run.run_dir), "step": run.step, **_protocol(len(prompts), seed, evaluator,
                                                                                   digit_evaluator),
                         "sampling": dict(run.last_report)},
            "rows": rows}


def format_table(result: dict) -> str:
    """The agreement rows as a plain-text table (attributes: seen / held-out combinations)."""
    rows = result["rows"]
    names = [a for a in ATTRIBUTES if any(a in r.get("seen", {}) for r in rows.values())]
    header = f"{'':34} {'R-prec':>7} {'cosine':>7} {'FID':>8}" + "".join(f" {a + ' s/h':>15}" for a in names)
    lines = [header]
    for label, r in rows.items():
        fid = f"{r['fid']:8.3f}" if "fid" in r else f"{'-':>8}"
        cells = "".join(f" {r['seen'][a]:7.3f}/{r['heldout'][a]:<7.3f}" for a in names) if "seen" in r else ""
        lines.append(f"{label:34} {r['r_precision']:7.3f} {r['cosine']:7.3f} {fid}{cells}")
    return "\n".join(lines)
