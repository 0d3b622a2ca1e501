"""What `genforge eval` writes: eval.json (numbers + protocol) and an HTML report with pictures.

The report shows a grid of samples beside a grid of real images, the nearest training image (in
pixel space) of a few samples as a memorisation check, and the training curves of metrics.jsonl.
Pictures are PNG files next to report.html, referenced by relative paths.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import torch

from ..imageio import atomic_write_bytes, make_grid, save_png, to_uint8
from ..rundir import read_metrics

NEAREST_SAMPLES = 8

# metric -> (which direction is better, units and scale). Shown in the report and by `genforge compare`.
METRIC_INFO = {
    "fid": ("lower", "squared feature distance (evaluator features; comparable only with the same extractor)"),
    "kid_mean": ("lower", "MMD^2 with a cubic kernel, same features; unitless"),
    "kid_std": ("", "spread of KID over subsets"),
    "is_mean": ("higher", "exp(KL) of class predictions, 1 .. number of classes"),
    "is_std": ("", "spread of IS over splits"),
    "precision": ("higher", "share of samples inside the real manifold (k = 3), 0 .. 1"),
    "recall": ("higher", "share of real images inside the sample manifold (k = 3), 0 .. 1"),
    "density": ("higher", "k-NN density of samples among real images (k = 5), about 1 for real data"),
    "coverage": ("higher", "share of real images with a sample among their 5 neighbours, 0 .. 1"),
    "class_accuracy": ("higher", "share of samples the evaluator classifies as the asked-for class, 0 .. 1"),
    "test_nll": ("lower", "IWAE bound on -log p(x), nats per image"),
    "test_elbo": ("lower", "negative ELBO, nats per image"),
    "test_reconstruction": ("lower", "-log p(x|z), nats per image"),
    "test_kl": ("", "KL(q(z|x) || p(z)), nats per image"),
    "test_mse": ("lower", "per-pixel squared error of the decoder mean, pixels in [0, 1]"),
}


def metric_direction(name: str) -> str:
    """'lower is better', 'higher is better' or ''."""
    better = METRIC_INFO.get(name, ("", ""))[0]
    return f"{better} is better" if better else ""


def nearest_training_images(samples: torch.Tensor, training: torch.Tensor,
                            chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, the index of the closest training image (Euclidean, pixels in [0, 1]) and the distance."""
    flat = to_uint8(samples).flatten(1).float() / 255
    best_distance = torch.full((len(flat),), math.inf)
    best_index = torch.zeros(len(flat), dtype=torch.long)
    for start in range(0, len(training), chunk):
        block = training[start:start + chunk].flatten(1).float() / 255
        distance, index = torch.cdist(flat, block).min(dim=1)
        better = distance < best_distance
        best_distance[better] = distance[better]
        best_index[better] = index[better] + start
    return best_index, best_distance


def plot_training_curves(metrics_path: Path, out: Path) -> Path | None:
    """One panel per logged quantity against the step; None when there is nothing to plot."""
    records = read_metrics(metrics_path)
    series: dict[str, tuple[list, list]] = {}
    for record in records:
        step = record.get("step")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(value)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for ax, (key, (xs, ys)) in zip(axes.flat, series.items()):
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def write_report(result: dict, out_dir: str | Path, run_dir: str | Path, training_images: torch.Tensor | None) -> dict:
    """Write eval.json, report.html and its PNGs into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = result.pop("_images", {})
    paths = {"json": out_dir / "eval.json", "html": out_dir / "report.html"}
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=2) + "\n").encode())

    figures = []
    if "samples" in pictures:
        paths["samples"] = save_png(make_grid(pictures["samples"], nrow=8), out_dir / "samples.png")
        paths["real"] = save_png(make_grid(pictures["real"], nrow=8), out_dir / "real.png")
        figures.append(f'<div class="pair"><figure><img src="samples.png"><figcaption>generated (seed '
                       f'{result["protocol"]["sample_seed"]})</figcaption></figure><figure><img src="real.png">'
                       f'<figcaption>real ({html.escape(result["protocol"]["reference"]["split"])} split)'
                       '</figcaption></figure></div>')
        if training_images is not None and len(training_images):
            samples = pictures["samples"][:NEAREST_SAMPLES]
            index, distance = nearest_training_images(samples, training_images)
            pairs = torch.cat([to_uint8(samples), training_images[index]])  # row 1 samples, row 2 neighbours
            paths["nearest"] = save_png(make_grid(pairs, nrow=len(samples)), out_dir / "nearest.png")
            distances = ", ".join(f"{d:.2f}" for d in distance.tolist())
            figures.append('<h2>Nearest training images</h2><p>Top row: samples; bottom row: the closest image of '
                           'the training split in pixel space (Euclidean distance, pixels in [0, 1]: '
                           f'{distances}). Near-zero distances would mean copied training images.</p>'
                           '<img src="nearest.png">')
    curves = plot_training_curves(Path(run_dir) / "metrics.jsonl", out_dir / "training-curves.png")
    if curves is not None:
        paths["curves"] = curves
        figures.append('<h2>Training curves</h2><img src="training-curves.png">')

    real_row = result.get("real_against_real") or {}
    rows = ("<tr><th>metric</th><th>this run</th><th>real against real</th><th>better</th><th>units and scale</th></tr>"
            + "".join(f"<tr><td>{html.escape(k)}</td><td>{_format(v)}</td>"
                      f"<td>{_format(real_row[k]) if k in real_row else ''}</td>"
                      f"<td>{html.escape(metric_direction(k))}</td>"
                      f"<td>{html.escape(METRIC_INFO.get(k, ('', ''))[1])}</td></tr>"
                      for k, v in result["metrics"].items()))
    protocol = html.escape(json.dumps(result["protocol"], indent=2))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>genforge eval: {html.escape(result['run'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} img{{image-rendering:pixelated;
max-width:100%}} .pair{{display:flex;gap:2em}} .pair img{{width:400px}} td{{padding:2px 12px}}
pre{{background:#f4f4f4;padding:1em;font-size:12px}}</style></head><body>
<h1>{html.escape(result['model'])} on {html.escape(result['data'])}, step {result['step']}</h1>
<p>Run <code>{html.escape(result['run'])}</code>, genforge {html.escape(result['genforge_version'])},
{result['seconds']} s.</p>
<table>{rows}</table>
{''.join(figures)}
<h2>Protocol</h2><pre>{protocol}</pre>
</body></html>
"""
    atomic_write_bytes(paths["html"], page.encode())
    return paths


def evaluate_and_report(run, settings=None, evaluator: str | None = None,
                        inception_weights: str | None = None, out: str | Path | None = None,
                        log=print) -> tuple[dict, dict]:
    """`genforge eval`: measure a loaded run (genforge.load_run), then write eval.json and
    report.html into `out` (default RUN/eval).

    Nothing is written until every number has been computed, so a failure leaves no partial report.
    """
    from ..families.registry import load_data
    from .evaluate import evaluate_run

    result = evaluate_run(run, settings, evaluator, inception_weights, log)
    training = load_data(run.config).images
    if out is None:
        # Earlier evaluations are kept: each one also goes to RUN/eval/step-N[-k]/ (genforge compare reads them).
        images = dict(result["_images"])
        history = write_report(dict(result, _images=images), history_dir(Path(run.run_dir) / "eval", run.step),
                               run.run_dir, training)
        result["_images"] = images
    paths = write_report(result, out or Path(run.run_dir) / "eval", run.run_dir, training)
    if out is None:
        paths["history"] = history["json"].parent
    return result, paths


def history_dir(eval_dir: Path, step: int) -> Path:
    """A new folder eval/step-N for this evaluation (step-N-2, -3, ... when the step was evaluated before)."""
    base = eval_dir / f"step-{step:07d}"
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = eval_dir / f"{base.name}-{k}"
    return candidate


def evaluations(run_dir: str | Path) -> list[dict]:
    """Every evaluation kept in RUN/eval (oldest first); the single eval.json of older runs otherwise."""
    eval_dir = Path(run_dir) / "eval"
    found = sorted(eval_dir.glob("step-*/eval.json"), key=lambda p: (p.stat().st_mtime, p.as_posix()))
    if not found and (eval_dir / "eval.json").is_file():
        found = [eval_dir / "eval.json"]
    return [json.loads(p.read_text(encoding="utf-8")) for p in found]


def compare_table(run_dirs: list[str | Path], latest_only: bool = False) -> str:
    """A plain-text table of the runs' evaluations: one row per evaluation, one column per metric,
    with each metric's better direction; a note when the runs used different extractors."""
    from ..errors import GenforgeError

    rows = []
    for run_dir in run_dirs:
        found = evaluations(run_dir)
        if not found:
            raise GenforgeError(f"{run_dir} has no evaluation (no eval/eval.json); run genforge eval --run {run_dir} first")
        rows.extend(found[-1:] if latest_only else found)
    metrics = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    arrows = {"lower": "↓", "higher": "↑", "": " "}
    head = ["run", "step", "model", "n"] + [f"{m} ({arrows[METRIC_INFO.get(m, ('', ''))[0]]})" for m in metrics]
    table = [head]
    for r in rows:
        table.append([r["run"], str(r["step"]), r["model"], str(r["protocol"].get("n_generated", ""))]
                     + [f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "" for m in metrics])
        real = r.get("real_against_real") or {}
        if real:
            table.append(["  real against real", "", "", ""] + [f"{real[m]:.4g}" if m in real else "" for m in metrics])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    extractors = {r["protocol"].get("extractor", {}).get("sha256", "")[:12] for r in rows} - {""}
    lines.append("(↓ lower is better, ↑ higher is better)")
    if len(extractors) > 1:
        lines.append(f"note: the evaluations used {len(extractors)} different feature extractors "
                     f"({', '.join(sorted(extractors))}); their feature metrics are not comparable")
    return "\n".join(lines)
