"""Image-to-image inference and evaluation: translate images with a trained pix2pix run, score the
translations against targets (L1, PSNR, SSIM; FID and KID with an evaluator file) and write a results
page of input | output | target rows.

Inference mode: the generator runs in eval mode, so dropout is off and the output is a deterministic
function of the input; instance normalisation uses each image's own statistics exactly as in training,
batch normalisation uses the running statistics gathered in training. ``dropout_seed`` turns the
dropout layers back on (the paper's test-time noise, section 3.2) with a fixed seed: the same seed
gives the same output, another seed another sample.

From Python::

    from genforge.run import load_run
    from genforge.translate import translate_path
    summary = translate_path(load_run("runs/edges2digits"), "data/edges2digits/test", "results", pairs=True,
                             evaluator="evaluators/mnist-5k-32.pt")   # evaluator optional: adds FID and KID
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data.base import ImageDataset
from .data.paired import prepare_pairs, read_pairs, read_side_by_side
from .data.transforms import resize_uint8, to_channels
from .errors import GenforgeError
from .families.pix2pix.translate import score, translate_batch
from .imageio import IMAGE_SUFFIXES, atomic_write_text, image_array, image_files, open_image, save_png, to_uint8
from .metrics.features import Evaluator, FeatureModule, load_evaluator
from .metrics.scores import extract, fid_from_features, kid_from_features

KID_SUBSETS = 100
"""KID subsets (of min(1000, pairs) images per side), as `genforge eval`'s default."""


def fitting_evaluator(evaluator: str | Path | Evaluator, run) -> Evaluator:
    """Load an evaluator file (or take a loaded one) and check that it measures the run's images
    (same image size and channels); a GenforgeError otherwise."""
    cfg = run.config
    if not isinstance(evaluator, Evaluator):
        evaluator = load_evaluator(evaluator, run.device)
    evaluator.check_compatible(cfg.model.image_size, cfg.model.channels, f"the translations of {run.run_dir}")
    return evaluator


def distribution_scores(evaluator: Evaluator, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor,
                        seed: int = 0) -> dict[str, float]:
    """FID and KID (mean, std) of the translations against the targets in the evaluator's feature space, and
    of the inputs (the identity mapping) as a baseline. Images are uint8 or floats in [0, 1].

    The computation is `genforge eval`'s: features of our classifier, float64 Frechet distance
    (Heusel et al. 2017, eq. 6) and the unbiased polynomial-kernel KID (Binkowski et al. 2018).
    """
    if len(targets) < 2:
        raise GenforgeError(f"FID needs at least 2 pairs, got {len(targets)}; translate a folder of pairs")
    module = FeatureModule(evaluator.network, "features")
    target_features = extract(module, targets)
    subset_size = min(1000, len(targets))
    out: dict[str, float] = {}
    for prefix, images in (("", outputs), ("identity_", inputs)):
        features = extract(module, images)
        out[f"{prefix}fid"] = fid_from_features(target_features, features)
        out[f"{prefix}kid_mean"], out[f"{prefix}kid_std"] = kid_from_features(target_features, features, KID_SUBSETS,
                                                                              subset_size, seed)
    return out


@dataclass
class TranslateResult:
    out_dir: Path
    count: int
    page: Path
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_inputs(path: Path) -> tuple[list[torch.Tensor], list[str]]:
    files = [path] if path.is_file() else image_files(path) if path.is_dir() else None
    if files is None:
        raise GenforgeError(f"--input {path} does not exist; give an image file or a folder of images")
    if not files:
        raise GenforgeError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, names = [], []
    for p in files:
        image = open_image(p)
        mode = "L" if image.mode in ("L", "1", "I;16", "I") else "RGB"
        images.append(torch.from_numpy(image_array(image, mode).copy()).permute(2, 0, 1))
        names.append(p.stem)
    return images, names


def _unique(names: list[str]) -> list[str]:
    """The names made distinct ('a', 'a' -> 'a', 'a-2'), never colliding with another input's own name
    (a.png, a.jpg and a-2.png give a, a-3, a-2), so no output overwrites another."""
    taken = set(names)
    used: set[str] = set()
    out = []
    for n in names:
        candidate, k = n, 1
        while candidate in used or (candidate != n and candidate in taken):
            k += 1
            candidate = f"{n}-{k}"
        used.add(candidate)
        out.append(candidate)
    return out


def load_inputs(run, path: str | Path, pairs: bool = False) -> tuple[ImageDataset, list[str]]:
    """Read translate inputs and apply the run's own preprocessing (direction, channels, size).

    pairs=True: `path` is a side-by-side pair file or a folder of pairs (either paired layout), whose
    targets are kept for scoring. pairs=False: an image file or a folder of input images.
    """
    cfg, notes = run.config, []
    path = Path(path)
    size, channels = cfg.model.image_size, cfg.model.channels
    if pairs:
        if path.is_file():
            data = read_side_by_side([path], str(path))
        else:
            data = read_pairs(path)
        data = prepare_pairs(data, cfg.pix2pix.direction, str(path))
        names = data.extras["names"]
        inputs, targets = data.images, data.targets
        if cfg.data.channels and inputs.shape[1] != cfg.data.channels:
            inputs, targets = to_channels(inputs, cfg.data.channels), to_channels(targets, cfg.data.channels)
        batches = [inputs]
    else:
        images, names = _read_inputs(path)
        batches, targets = [], None
        for image, name in zip(images, names):
            if image.shape[-1] != image.shape[-2]:
                raise GenforgeError(f"{name}: {image.shape[-1]}x{image.shape[-2]} is not square; this run translates "
                                    f"{size}x{size} images; crop it first")
            if cfg.data.channels and image.shape[0] != cfg.data.channels:
                image = to_channels(image[None], cfg.data.channels)[0]
            batches.append(image[None])
    out = []
    for batch, name in zip(batches, names if not pairs else [path.name]):
        if batch.shape[1] != channels:
            kind = {1: "grayscale", 3: "RGB"}[channels]
            raise GenforgeError(f"{name}: has {batch.shape[1]} channel(s) but this run translates {channels}-channel "
                                f"({kind}) images; convert the input to {kind}")
        if batch.shape[-1] != size:
            notes.append(f"{name}: resized {batch.shape[-1]} -> {size} (antialiased bilinear)")
            batch = resize_uint8(batch, size)
        out.append(batch)
    inputs = torch.cat(out)
    if targets is not None and targets.shape[-1] != size:
        targets = resize_uint8(targets, size)
    return ImageDataset(inputs, name=str(path), extras={"notes": notes}, targets=targets), _unique(names)


def _save(image: torch.Tensor, path: Path) -> None:
    save_png(to_uint8(image).permute(1, 2, 0).numpy(), path)


def translate_path(run, input_path: str | Path, out_dir: str | Path, pairs: bool = False,
                   dropout_seed: int | None = None, evaluator: str | Path | Evaluator | None = None) -> TranslateResult:
    """Translate an image file or folder with a loaded pix2pix Run; write PNGs, index.html and, for
    pairs, metrics.json (means over the pairs, for the model and for the identity mapping).

    With `evaluator` (a file from `genforge train-evaluator`, or a loaded Evaluator; pairs only), metrics.json
    also holds FID and KID of the outputs against the targets (and of the inputs, the identity mapping's),
    with the evaluator's SHA-256. An evaluator of another image size or channel count is a GenforgeError,
    raised before anything is written.
    """
    if run.family != "pix2pix":
        raise GenforgeError(f"{run.run_dir} holds a {run.config.model.name} run; genforge translate needs a pix2pix run")
    if evaluator is not None and not pairs:
        raise GenforgeError("an evaluator compares the translations with their targets; pass --pairs with a folder "
                            "of pairs, or drop --evaluator")
    if evaluator is not None:
        evaluator = fitting_evaluator(evaluator, run)
    data, names = load_inputs(run, input_path, pairs)
    generator = run.networks["generator"]
    outputs = translate_batch(generator, data.images.to(run.device), dropout_seed=dropout_seed).cpu()
    distribution = {}
    if evaluator is not None:  # before anything is written: a failure here leaves no half-written results
        distribution = distribution_scores(evaluator, outputs, data.targets, data.images)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    per_image = score(outputs, data.targets) if data.targets is not None else None
    rows = []
    for i, name in enumerate(names):
        files = {"input": data.images[i], "output": outputs[i]}
        if data.targets is not None:
            files["target"] = data.targets[i]
        cells = []
        for kind, image in files.items():
            _save(image.float() / 255 if image.dtype == torch.uint8 else image, out_dir / "images" / f"{name}_{kind}.png")
            cells.append(f'<td><img src="images/{html.escape(name)}_{kind}.png" alt="{kind}"></td>')
        score_cell = ""
        if per_image is not None:
            score_cell = (f"<td>L1 {per_image['l1'][i]:.4f}<br>PSNR {per_image['psnr'][i]:.2f}<br>"
                          f"SSIM {per_image['ssim'][i]:.3f}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}{score_cell}</tr>")
    metrics = {}
    if data.targets is not None:
        identity = score(data.images.float() / 255, data.targets)
        metrics = {**{k: float(v.mean()) for k, v in per_image.items()},
                   **{f"identity_{k}": float(v.mean()) for k, v in identity.items()}, "pairs": len(names)}
        if evaluator is not None:
            metrics.update(distribution)
            metrics["evaluator"] = evaluator.protocol()  # path, SHA-256, data: FIDs compare within one file only
            metrics["kid"] = {"kernel": "(x.y / D + 1)^3", "estimator": "unbiased MMD^2", "subsets": KID_SUBSETS,
                              "subset_size": min(1000, len(names)), "seed": 0}
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    header = "<th>name</th><th>input</th><th>output</th>" + ("<th>target</th><th>scores</th>" if per_image is not None else "")
    summary = ""
    if metrics:
        summary = (f"<p>{len(names)} pairs. Model: L1 {metrics['l1']:.4f}, PSNR {metrics['psnr']:.2f} dB, "
                   f"SSIM {metrics['ssim']:.4f}. Identity mapping: L1 {metrics['identity_l1']:.4f}, "
                   f"PSNR {metrics['identity_psnr']:.2f} dB, SSIM {metrics['identity_ssim']:.4f}.</p>")
        if "fid" in metrics:
            e = metrics["evaluator"]
            summary += (f"\n<p>FID {metrics['fid']:.3f}, KID {metrics['kid_mean']:.5f} (identity mapping: FID "
                        f"{metrics['identity_fid']:.3f}, KID {metrics['identity_kid_mean']:.5f}); features of the "
                        f"evaluator {html.escape(e['path'])} (trained on {html.escape(e['data'])}, SHA-256 "
                        f"{e['sha256']}). With few pairs FID is biased upwards: compare only numbers measured "
                        f"on the same pairs with the same evaluator file.</p>")
    mode = "dropout on, seed " + str(dropout_seed) if dropout_seed is not None else "eval mode (dropout off)"
    page = out_dir / "index.html"
    atomic_write_text(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>genforge translate</title>"
        "<style>img{image-rendering:pixelated;width:128px}td{padding:4px;font:12px sans-serif}</style></head><body>\n"
        f"<h1>{html.escape(str(run.run_dir))} (step {run.step})</h1>\n"
        f"<p>Input {html.escape(str(input_path))}; direction {run.config.pix2pix.direction}; {mode}.</p>\n{summary}\n"
        f"<table>\n<tr>{header}</tr>\n" + "\n".join(rows) + "\n</table>\n</body></html>\n")
    return TranslateResult(out_dir, len(names), page, metrics, data.extras["notes"])
