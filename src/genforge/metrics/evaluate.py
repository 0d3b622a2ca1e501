"""Evaluating a run: draw samples, extract features once, compute the chosen metrics, state the protocol.

`evaluate_run` is what `genforge eval` calls; `TrainingEvaluator` is what the training loop calls
every `eval.every` steps (its reference features are computed once, and it never touches the global
random number generators, so resumed runs stay bit-exact).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..conditioning import Condition
from ..config import METRIC_NAMES
from ..errors import GenforgeError
from ..families.contract import SampleRequest
from ..families.registry import family_of, load_data
from ..families.registry import sample as family_sample
from ..families.vae.likelihood import BINARIZATIONS, default_binarization
from ..rundir import slug
from .features import Evaluator, FeatureModule, load_evaluator
from .prdc import density_coverage, precision_recall
from .scores import extract, fid_from_features, inception_score_from_logits, kid_from_features

ALL_METRICS = METRIC_NAMES
FEATURE_METRICS = ("fid", "kid", "is", "pr", "acc")
DEFAULT_EVALUATOR_DIR = Path("evaluators")


MAX_EVAL_IMAGES = 200_000
"""The most images one evaluation generates and compares (their features are held in memory)."""


@dataclass
class EvalSettings:
    """How a run is measured; everything here is written into eval.json's protocol."""

    n: int = 10_000
    """Generated images (and at most this many reference images)."""
    metrics: tuple[str, ...] = ()
    """Subset of ALL_METRICS; empty = fid, kid, is, pr (+ acc for conditional models, + nll for VAEs)."""
    seed: int = 0
    """Latent seed of the samples; also seeds KID subsets, IS splits and the reference subset."""
    reference_split: str = "test"
    """Split of the run's dataset the samples are compared with ('train' if the data has no test split)."""
    kid_subsets: int = 100
    kid_subset_size: int = 0
    """0 = min(1000, number of images per side)."""
    is_splits: int = 10
    nll_k: int = 1000
    """Importance samples per test image for the IWAE bound."""
    nll_images: int = 10_000
    """At most this many test images for the VAE likelihood metrics."""
    binarize: str = ""
    """'dynamic', 'threshold' or 'none'; empty = dynamic for Bernoulli decoders, none for Gaussian ones."""
    real_reference: bool = True
    """Also score n real images of the other split against the reference (the report's real-against-real
    row: what a perfect model would get with these sample counts)."""

    def __post_init__(self) -> None:
        if not 2 <= self.n <= MAX_EVAL_IMAGES:
            raise GenforgeError(f"--n must be between 2 and {MAX_EVAL_IMAGES:,}, got {self.n:,}; "
                                "FID is usually reported on 10,000 or 50,000 images")
        if not 0 <= self.seed < 2**32:
            raise GenforgeError(f"--seed must be in [0, 2**32), got {self.seed}")
        bad = [m for m in self.metrics if m not in ALL_METRICS]
        if bad:
            raise GenforgeError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(ALL_METRICS)}")
        if self.binarize and self.binarize not in BINARIZATIONS:
            raise GenforgeError(f"--binarize must be one of {', '.join(BINARIZATIONS)}, got {self.binarize!r}")
        for name in ("kid_subsets", "is_splits", "nll_k", "nll_images"):
            if getattr(self, name) < 1:
                raise GenforgeError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """'fid,kid' -> ('fid', 'kid'); empty -> () (the defaults)."""
    return tuple(m.strip().lower() for m in (text or "").split(",") if m.strip())


def default_metrics(family, conditional: bool) -> tuple[str, ...]:
    """fid, kid, is, pr; acc for conditional models; nll for families with a likelihood."""
    return ("fid", "kid", "is", "pr") + (("acc",) if conditional else ()) + (("nll",) if family.likelihood else ())


@dataclass
class Extractors:
    """The feature module (FID, KID, P/R), the logit module (IS) and the classifier (class accuracy)."""

    features: nn.Module
    logits: nn.Module
    classifier: Evaluator | None
    protocol: dict = field(default_factory=dict)


def find_evaluator(data_name: str, explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    candidate = DEFAULT_EVALUATOR_DIR / f"{slug(data_name)}.pt"
    return candidate if candidate.is_file() else None


def train_evaluator_command(data_name: str, data_root: str = "", image_size: int = 0, channels: int = 0) -> str:
    """The `genforge train-evaluator` command that makes the default evaluator for this data, as printed."""
    parts = ["genforge train-evaluator", f"--data {data_name}"]
    if data_root:
        parts.append(f"--data-root {data_root}")
    if image_size:
        parts.append(f"--image-size {image_size}")
    if channels:
        parts.append(f"--channels {channels}")
    return " ".join(parts + [f"--out {DEFAULT_EVALUATOR_DIR / (slug(data_name) + '.pt')}"])


def make_extractors(data_name: str, image_size: int, channels: int, device: torch.device,
                    evaluator: str | None = None, inception_weights: str | None = None,
                    data_cfg=None) -> Extractors:
    """Load the classifier evaluator and/or Inception-v3; features come from Inception when given.
    data_cfg (the run's DataConfig) only completes the suggested train-evaluator command."""
    path = find_evaluator(data_name, evaluator)
    classifier = None
    if path is not None:
        classifier = load_evaluator(path, device)
        classifier.check_compatible(image_size, channels, f"the run's data ({data_name})")
    if inception_weights:
        from .inception import load_inception

        network, sha256 = load_inception(inception_weights, device)
        protocol = {"kind": "inception-v3 (pytorch-fid, pt_inception-2015-12-05)", "path": str(inception_weights),
                    "sha256": sha256, "feature_dim": 2048, "input": "bilinear resize to 299x299, grey repeated to RGB"}
        if classifier is not None:
            protocol["classifier_for_acc"] = classifier.protocol()
        return Extractors(FeatureModule(network, "features", 50), FeatureModule(network, "logits", 50),
                          classifier, protocol)
    if classifier is None:
        command = train_evaluator_command(data_name, getattr(data_cfg, "root", ""), getattr(data_cfg, "image_size", 0),
                                          getattr(data_cfg, "channels", 0))
        raise GenforgeError(f"no evaluator for {data_name}: train one with `{command}`, "
                            "or pass --evaluator FILE or --inception-weights FILE")
    protocol = classifier.protocol()
    if classifier.data != data_name:
        protocol["note"] = f"evaluator trained on {classifier.data}, run trained on {data_name}"
    return Extractors(FeatureModule(classifier.network, "features"), FeatureModule(classifier.network, "logits"),
                      classifier, protocol)


def _kid_size(settings: EvalSettings, n_real: int, n_fake: int) -> int:
    return settings.kid_subset_size or min(1000, n_real, n_fake)


def feature_metrics(real_features: torch.Tensor, fake_images: torch.Tensor, extractors: Extractors,
                    settings: EvalSettings, metrics: tuple[str, ...],
                    fake_labels: torch.Tensor | None = None) -> dict[str, float]:
    """FID, KID, IS, precision/recall/density/coverage and class accuracy of generated images in [0, 1]."""
    out: dict[str, float] = {}
    if any(m in metrics for m in ("fid", "kid", "pr")):
        fake_features = extract(extractors.features, fake_images)
        if "fid" in metrics:
            out["fid"] = fid_from_features(real_features, fake_features)
        if "kid" in metrics:
            size = _kid_size(settings, len(real_features), len(fake_features))
            out["kid_mean"], out["kid_std"] = kid_from_features(real_features, fake_features, settings.kid_subsets,
                                                                size, settings.seed)
        if "pr" in metrics:
            out.update(precision_recall(real_features, fake_features, k=3))
            out.update(density_coverage(real_features, fake_features, k=5))
    if "is" in metrics or "acc" in metrics:
        if "is" in metrics:
            logits = extract(extractors.logits, fake_images)
            out["is_mean"], out["is_std"] = inception_score_from_logits(logits, settings.is_splits, settings.seed)
        if "acc" in metrics:
            if fake_labels is None:
                raise GenforgeError("class accuracy (acc) needs a class-conditional model; drop acc from --metrics")
            if extractors.classifier is None:
                raise GenforgeError("class accuracy (acc) needs a classifier evaluator; pass --evaluator FILE")
            logits = extract(FeatureModule(extractors.classifier.network, "logits"), fake_images)
            out["class_accuracy"] = float((logits.argmax(1) == fake_labels.cpu()).float().mean())
    return out


def spread_indices(total: int, k: int) -> torch.Tensor:
    """min(k, total) indices spread evenly over range(total): 0, total/k, 2 total/k, ... (rounded down)."""
    k = min(k, total)
    return torch.arange(k) * total // max(k, 1)


def _reference(cfg, split: str, n: int, seed: int):
    """Up to n images (and labels) of the run's dataset split; a seeded subset when there are more."""
    try:
        data = load_data(cfg, split=split)
        used_split = split
    except GenforgeError:
        if split == "train":
            raise
        data = load_data(cfg, split="train")
        used_split = "train"
    images, labels = data.images, data.labels
    selection = "all"
    if len(images) > n:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        images = images[order]
        labels = labels[order] if labels is not None else None
        selection = f"random subset of {n} (seed {seed})"
    return images, labels, {"data": cfg.data.name, "split": used_split, "n": len(images), "selection": selection}


def _protocol(settings: EvalSettings, metrics, extractors, reference, n_fake, binarize) -> dict:
    protocol = {"metrics": list(metrics), "n_generated": n_fake, "sample_seed": settings.seed,
                "reference": reference}
    if extractors is not None:
        protocol["extractor"] = extractors.protocol
    if "fid" in metrics:
        protocol["fid"] = {"statistics": "float64 mean and covariance (n - 1)", "sqrtm": "symmetric eigh, float64"}
    if "kid" in metrics:
        protocol["kid"] = {"kernel": "(x.y / D + 1)^3", "estimator": "unbiased MMD^2", "subsets": settings.kid_subsets,
                           "subset_size": _kid_size(settings, reference["n"], n_fake), "seed": settings.seed}
    if "is" in metrics:
        protocol["is"] = {"splits": settings.is_splits, "seed": settings.seed}
    if "pr" in metrics:
        protocol["precision_recall"] = {"k": 3, "distance": "euclidean in feature space"}
        protocol["density_coverage"] = {"k": 5}
    if "nll" in metrics:
        protocol["nll"] = {"k": settings.nll_k, "binarize": binarize, "seed": settings.seed,
                           "units": "nats per image", "bound": "IWAE (Burda et al. 2016)"}
    return protocol


def evaluate_run(run, settings: EvalSettings | None = None, evaluator: str | None = None,
                 inception_weights: str | None = None, log=print) -> dict:
    """Measure a loaded run (genforge.load_run). Returns the eval.json content (metrics + protocol)
    plus, under '_images', what the report shows (not written to eval.json)."""
    settings = settings or EvalSettings()
    start = time.perf_counter()
    run_dir = run.run_dir
    cfg, model, family = run.config, run.config.model, run.model_family
    metrics = settings.metrics or default_metrics(family, bool(model.num_classes))
    if "nll" in metrics and not family.likelihood:
        raise GenforgeError(f"nll needs a model with a likelihood (a VAE) and {model.name} is a {run.family}; "
                            "drop nll from --metrics")
    if "acc" in metrics and not model.num_classes:
        raise GenforgeError(f"class accuracy (acc) needs a class-conditional model and {model.name} is not one")
    extractors = None
    if any(m in FEATURE_METRICS for m in metrics):
        extractors = make_extractors(cfg.data.name, model.image_size, model.channels, run.device, evaluator,
                                     inception_weights, data_cfg=cfg.data)
    real_images, _, reference = _reference(cfg, settings.reference_split, settings.n, settings.seed)
    binarize = settings.binarize or default_binarization(cfg)
    if "kid" in metrics:  # fail before the slow part
        size = _kid_size(settings, len(real_images), settings.n)
        if min(len(real_images), settings.n) < size:
            raise GenforgeError(f"KID with subsets of {size} needs at least {size} images per side, got "
                                f"{len(real_images)} reference and {settings.n} generated; raise --n or lower "
                                "--kid-subset-size")

    labels = torch.arange(settings.n) % model.num_classes if model.num_classes else None
    log(f"sampling {settings.n} images from {run_dir} (step {run.step}, seed {settings.seed})")
    fake_images = run.sample(settings.n, seed=settings.seed, labels=labels)
    results: dict[str, float] = {}
    if extractors is not None:
        log(f"extracting features of {len(real_images)} reference images ({reference['split']} split)")
        real_features = extract(extractors.features, real_images)
        log("computing " + ", ".join(m for m in metrics if m in FEATURE_METRICS))
        results.update(feature_metrics(real_features, fake_images, extractors, settings, metrics, labels))
    if "nll" in metrics:
        test_images, test_labels, nll_reference = _reference(cfg, "test", settings.nll_images, settings.seed)
        log(f"importance-sampled likelihood of {len(test_images)} {nll_reference['split']} images, K = {settings.nll_k}")
        values = family.likelihood(run.networks, test_images, test_labels if model.num_classes else None, cfg,
                                   k=settings.nll_k, binarize=binarize, seed=settings.seed)
        results.update({f"test_{k}": v for k, v in values.items()})
    protocol = _protocol(settings, metrics, extractors, reference, settings.n, binarize)
    if "nll" in metrics:
        protocol["nll"]["test_images"] = nll_reference
    real_row = {}
    if extractors is not None and settings.real_reference:
        # The same metrics for real images of another split against the reference: what a perfect
        # model would score with these sample counts (FID is biased upwards for small n).
        real_row, other = _real_against_real(cfg, reference, settings, extractors, real_features, metrics, log)
        if other:
            protocol["real_against_real"] = other
    return {"genforge_version": __version__, "run": str(run_dir), "step": run.step, "model": model.name,
            "family": run.family, "data": cfg.data.name, "metrics": results, "real_against_real": real_row,
            "protocol": protocol,
            # the split actually used (the asked-for one falls back to train when there is no test split)
            "settings": asdict(settings) | {"metrics": list(metrics), "reference_split": reference["split"]},
            "seconds": round(time.perf_counter() - start, 2),
            # The report's real grid is spread over the reference like the samples are over the classes:
            # a split stored class by class (mnist-5k's test split) would otherwise show only 0s and 1s.
            "_images": {"samples": fake_images[:64], "real": real_images[spread_indices(len(real_images), 64)]}}


def evaluate_samples(samples: str | Path, data: str, data_root: str = "", settings: EvalSettings | None = None,
                     evaluator: str | None = None, inception_weights: str | None = None, log=print) -> dict:
    """Score images made by any tool (a folder of image files or an .npz with array `x`) against the
    reference split of dataset `data`, with the protocol of evaluate_run (feature metrics only), so
    that genforge and other tools can be compared on one protocol. Returns the eval.json content."""
    from ..config import RunConfig
    from ..data import load_dataset

    settings = settings or EvalSettings()
    start = time.perf_counter()
    path = Path(samples)
    source = f"npz:{path}" if path.suffix.lower() == ".npz" else f"folder:{path}"
    if not path.exists():
        raise GenforgeError(f"--samples {path} does not exist; give a folder of images or an .npz file with array x")
    fake = load_dataset(source)
    metrics = tuple(m for m in (settings.metrics or ("fid", "kid", "is", "pr")))
    bad = [m for m in metrics if m not in FEATURE_METRICS or m == "acc"]
    if bad:
        raise GenforgeError(f"--samples scores {', '.join(m for m in FEATURE_METRICS if m != 'acc')}; "
                            f"drop {', '.join(bad)} from --metrics")
    cfg = RunConfig.from_dict({"data": {"name": data, "root": data_root, "image_size": fake.image_size,
                                        "channels": fake.channels}}, source="--samples")
    extractors = make_extractors(data, fake.image_size, fake.channels, torch.device("cpu"), evaluator,
                                 inception_weights, data_cfg=cfg.data)
    real_images, _, reference = _reference(cfg, settings.reference_split, settings.n, settings.seed)
    fake_images = fake.images[:settings.n].float().div(255)
    if "kid" in metrics and min(len(real_images), len(fake_images)) < _kid_size(settings, len(real_images),
                                                                               len(fake_images)):
        raise GenforgeError("KID needs at least as many images per side as its subset size; lower --kid-subset-size")
    log(f"extracting features of {len(real_images)} reference images ({reference['split']} split)")
    real_features = extract(extractors.features, real_images)
    log(f"scoring {len(fake_images)} images from {path}")
    results = feature_metrics(real_features, fake_images, extractors, settings, metrics)
    protocol = _protocol(settings, metrics, extractors, reference, len(fake_images), "none")
    protocol["samples"] = {"source": str(path), "n": len(fake_images), "selection": f"the first {len(fake_images)}"}
    return {"genforge_version": __version__, "run": str(path), "step": 0, "model": "external samples",
            "family": "", "data": data, "metrics": results, "real_against_real": {}, "protocol": protocol,
            "settings": asdict(settings) | {"metrics": list(metrics), "reference_split": reference["split"]},
            "seconds": round(time.perf_counter() - start, 2),
            "_images": {"samples": fake_images[:64], "real": real_images[spread_indices(len(real_images), 64)]}}


def _real_against_real(cfg, reference: dict, settings: EvalSettings, extractors: Extractors,
                       real_features: torch.Tensor, metrics, log) -> tuple[dict, dict]:
    """Feature metrics of real images from the other split (train when the reference is test) against
    the reference; ({}, {}) when the dataset has no other split."""
    other_split = "train" if reference["split"] != "train" else "test"
    try:
        images, _, other = _reference(cfg, other_split, settings.n, settings.seed + 1)
    except GenforgeError:
        return {}, {}
    if other["split"] == reference["split"]:
        return {}, {}
    feature_only = tuple(m for m in metrics if m in FEATURE_METRICS and m != "acc")
    if "kid" in feature_only and min(len(images), len(real_features)) < _kid_size(settings, len(real_features), len(images)):
        feature_only = tuple(m for m in feature_only if m != "kid")
    log(f"real against real: {len(images)} {other['split']} images against the reference")
    return feature_metrics(real_features, images, extractors, settings, feature_only), other


class TrainingEvaluator:
    """Metrics during training (`train --eval-every N`): reference features once, then per call
    samples from the current (EMA) networks and a dict of numbers for metrics.jsonl."""

    def __init__(self, cfg, device: torch.device):
        # Set-up draws nothing from the global RNGs, but guard them anyway: runs with and without
        # --eval-every must train identically.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self._setup(cfg, device)

    def _setup(self, cfg, device: torch.device) -> None:
        e = cfg.eval
        self.cfg, self.device = cfg, device
        self.family = family_of(cfg)
        metrics = parse_metrics(e.metrics) or tuple(m for m in default_metrics(self.family, bool(cfg.model.num_classes))
                                                    if m != "nll")
        self.settings = EvalSettings(n=e.n_samples, metrics=metrics, seed=e.seed, nll_k=e.nll_k,
                                     nll_images=e.n_samples)
        if "nll" in metrics and not self.family.likelihood:
            raise GenforgeError(f"eval.metrics has nll but {cfg.model.name} is not a VAE; drop nll")
        if "acc" in metrics and not cfg.model.num_classes:
            raise GenforgeError(f"eval.metrics has acc but {cfg.model.name} is not class-conditional; drop acc")
        self.extractors = None
        self.real_features = None
        if any(m in FEATURE_METRICS for m in metrics):
            self.extractors = make_extractors(cfg.data.name, cfg.model.image_size, cfg.model.channels, device,
                                              e.evaluator or None, e.inception_weights or None, data_cfg=cfg.data)
            real_images, _, _ = _reference(cfg, self.settings.reference_split, e.n_samples, e.seed)
            self.real_features = extract(self.extractors.features, real_images)
        self.test = _reference(cfg, "test", e.n_samples, e.seed) if "nll" in metrics else None

    @torch.no_grad()
    def __call__(self, networks: dict[str, nn.Module]) -> dict[str, float]:
        """Numbers (eval_*) for samples of `networks`, the run's inference networks (averages swapped in)."""
        cfg, s = self.cfg, self.settings
        devices = [self.device] if self.device.type == "cuda" else []
        # The global RNGs are saved and restored: evaluating must not change the training run.
        with torch.random.fork_rng(devices=devices):
            labels = (torch.arange(s.n, device=self.device) % cfg.model.num_classes
                      if cfg.model.num_classes else None)
            request = SampleRequest(s.n, s.seed, Condition(labels=labels))
            images = family_sample(self.family, networks, request, cfg).cpu()
            out = {}
            if self.extractors is not None:
                values = feature_metrics(self.real_features, images, self.extractors, s, s.metrics,
                                         labels.cpu() if labels is not None else None)
                out.update({f"eval_{k}": v for k, v in values.items()})
            if self.test is not None:
                test_images, test_labels, _ = self.test
                values = self.family.likelihood(networks, test_images, test_labels if cfg.model.num_classes else None,
                                                cfg, k=s.nll_k, binarize=default_binarization(cfg), seed=s.seed)
                out.update({f"eval_test_{k}": v for k, v in values.items()})
        return out
