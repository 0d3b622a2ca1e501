"""Deployable exports of a trained run: ``genforge export --run R --format F --out DIR``.

Only the family's inference networks are written (its `inference` names: the EMA generator, the
VAE, the pix2pix generator; never a discriminator), in eval mode. Formats:

    safetensors    DIR/model.safetensors: the weights; genforge.load_exported(DIR) samples from it
    onnx           DIR/NAME.onnx for each of the family's graphs (generate, encode, translate), batch size free
    torch-export   DIR/NAME.pt2 for each graph (torch.export.save), batch size free

Every export also writes DIR/export.json (format, family, step, the resolved config, the graphs'
inputs and outputs, the files), DIR/config.yaml and DIR/model_card.md. What a family exports is
declared by the family (Family.inference and Family.graphs); nothing here names a family.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__, rundir
from .errors import GenforgeError
from .families.contract import Graph
from .imageio import atomic_path, atomic_write_bytes, atomic_write_text
from .run import EXPORT_FILE, WEIGHTS_FILE, Run, read_export

FORMATS = ("safetensors", "onnx", "torch-export")
SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}
MAX_BATCH = 4096
"""Upper bound of the dynamic batch dimension in ONNX and torch.export programs."""
ONNX_OPSET = 18


@dataclass
class Export:
    """What export_run wrote."""

    folder: Path
    format: str
    files: list[str]
    """File names inside `folder`, the weights or programs first."""


def graphs_of(run: Run) -> dict[str, Graph]:
    """The run's inference functions as plain-tensor modules on the CPU (what ONNX and torch.export hold)."""
    if run.model_family.graphs is None:
        raise GenforgeError(f"the {run.family} family declares no graphs for ONNX or torch.export; "
                            "export it with --format safetensors")
    nets = {name: net if run.device.type == "cpu" else copy.deepcopy(net).cpu() for name, net in run.networks.items()}
    return run.model_family.graphs(nets, run.config)


def export_run(run: Run, out_dir: str | Path, fmt: str = "safetensors", force: bool = False) -> Export:
    """Write an export of `run` (loaded with genforge.load_run) into the folder `out_dir`.

    A folder that already holds an export is refused unless `force`; then only the files its
    export.json lists are replaced. Nothing is written before the checks pass.
    """
    if fmt not in FORMATS:
        raise GenforgeError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GenforgeError(f"{out} is a file; --out takes a folder for the export")
    old = out / EXPORT_FILE
    if old.exists() and not force:
        raise GenforgeError(f"{out} already holds an export; choose another --out or add --force to replace it")
    graphs = graphs_of(run) if fmt != "safetensors" else {}
    previous = read_export(out).get("files", []) if old.exists() else []
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        files = [_write_safetensors(run, out)]
        if run.model_family.keep_files is not None:  # what the networks are built from besides their weights
            for name in previous:  # a replaced export's kept folders go first: keep_files writes only missing ones
                if Path(name).name == name and (out / name).is_dir():
                    shutil.rmtree(out / name)
            before = {p.name for p in out.iterdir()}
            run.model_family.keep_files(run.networks, run.config, out)
            files += sorted({p.name for p in out.iterdir()} - before)
    else:
        writer = _write_onnx if fmt == "onnx" else _write_torch_export
        files = [writer(graph, out / f"{name}{SUFFIX[fmt]}") for name, graph in graphs.items()]
    for name in previous:  # a replaced export of another format leaves no stale files behind
        if name not in files and Path(name).name == name and name != EXPORT_FILE:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            else:
                (out / name).unlink(missing_ok=True)
    import yaml

    config = run.config.to_dict()
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(out / "model_card.md", model_card(run, fmt, files, graphs))
    files += ["config.yaml", "model_card.md", EXPORT_FILE]
    info = {"format": fmt, "genforge": __version__, "family": run.family, "model": run.config.model.name,
            "step": run.step, "files": files, "config": config,
            "graphs": {name: {"inputs": {k: {"shape": ["batch", *v.shape[1:]], "dtype": str(v.dtype).removeprefix("torch.")}
                                         for k, v in graph.inputs.items()},
                              "output": graph.output} for name, graph in graphs.items()}}
    atomic_write_text(out / EXPORT_FILE, json.dumps(info, indent=2) + "\n")
    return Export(out, fmt, files)


def _write_safetensors(run: Run, out: Path) -> str:
    from safetensors.torch import save_file

    tensors = run.inference_tensors()
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "genforge-export", "family": run.family,
                                               "step": str(run.step)})
    return WEIGHTS_FILE


def _dynamic_shapes(graph: Graph) -> tuple:
    """Dimension 0 of every input is the one batch size. The graphs' forward takes *inputs, whose
    shapes torch.export reads as one argument: a tuple of one tuple."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    per_input = tuple({0: batch} for _ in graph.inputs)
    return (per_input,) if _takes_varargs(graph.module) else per_input


def _takes_varargs(module) -> bool:
    import inspect

    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())


def _write_onnx(graph: Graph, path: Path) -> str:
    try:
        import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
    except ImportError:
        raise GenforgeError("ONNX export needs the onnx extra; install it with: pip install 'genforge[onnx]'") from None
    # torch.onnx logs a line for every optional library it does not find (torchvision): not ours to show.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and opset conversions
        program = torch.onnx.export(graph.module, tuple(graph.inputs.values()), dynamo=True, verbose=False,
                                    input_names=list(graph.inputs), output_names=[graph.output],
                                    dynamic_shapes=_dynamic_shapes(graph), opset_version=ONNX_OPSET,
                                    report=False, optimize=True)
        program.save(str(tmp), external_data=False)
    return path.name


def _write_torch_export(graph: Graph, path: Path) -> str:
    program = torch.export.export(graph.module, tuple(graph.inputs.values()), dynamic_shapes=_dynamic_shapes(graph))
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2 or a buffer, not the atomic temporary name
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def _run_numbers(run: Run) -> tuple[dict, dict]:
    """eval.json's metrics and protocol (when genforge eval was run), and the end-of-run test numbers."""
    evaluation = {}
    path = run.run_dir / "eval" / "eval.json"
    if path.is_file():
        try:
            evaluation = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            evaluation = {}
    test = {}
    metrics = run.run_dir / rundir.METRICS_FILE
    if metrics.is_file():
        for record in rundir.read_metrics(metrics):
            test.update({k: v for k, v in record.items() if k.startswith("test_")})
    return evaluation, test


def model_card(run: Run, fmt: str, files: list[str], graphs: dict[str, Graph]) -> str:
    """A short model card: what the model is, what it was trained on, its measured numbers and their
    protocol, how to use the files, and what it is not for."""
    cfg, m = run.config, run.config.model
    evaluation, test = _run_numbers(run)
    lines = [f"# {m.name} ({run.family}), exported by genforge {__version__}", "",
             "## Model",
             f"- family `{run.family}`, model `{m.name}`, {m.image_size}x{m.image_size} pixels, {m.channels} channel(s)"
             + (f", latent size {m.latent_dim}" if m.latent_dim else "")
             + (f", {m.num_classes} classes" if m.num_classes else ""),
             f"- networks exported: {', '.join(n for n in run.networks if n in run.model_family.inference)} "
             "(eval mode; averaged weights where kept)",
             f"- format `{fmt}`: {', '.join(files)}", "",
             "## Data and training",
             f"- data `{cfg.data.name}`, {run.step} training steps of batch {cfg.train.batch_size}, seed {cfg.train.seed}",
             "- the full resolved configuration is in config.yaml", "",
             "## Measured"]
    if evaluation.get("metrics"):
        protocol = evaluation.get("protocol", {})
        reference = protocol.get("reference", {})
        lines.append(f"From `genforge eval` (eval.json): {protocol.get('n_generated', '?')} generated images "
                     f"(seed {protocol.get('sample_seed', '?')}) against {reference.get('n', '?')} real ones "
                     f"({reference.get('data', '?')} {reference.get('split', '?')}), features "
                     f"{protocol.get('extractor', {}).get('kind', '?')}.")
        lines += [f"- {key}: {value:.5g}" for key, value in evaluation["metrics"].items()]
    if test:
        lines.append("End-of-run numbers on the test split (metrics.jsonl):")
        lines += [f"- {key}: {value:.5g}" for key, value in test.items()]
    if not evaluation.get("metrics") and not test:
        lines.append("Nothing was measured for this run (no eval/eval.json, no test numbers); run genforge eval first "
                     "to have its numbers here.")
    lines += ["", "## Use"]
    if fmt == "safetensors":
        lines.append(f"`genforge.load_exported(DIR).sample(16, seed=0)` or `genforge sample --run DIR`; the keys of "
                     f"{WEIGHTS_FILE} are `network.parameter`.")
    for name, graph in graphs.items():
        inputs = ", ".join(f"{k} {tuple(['N', *v.shape[1:]])} {str(v.dtype).removeprefix('torch.')}"
                           for k, v in graph.inputs.items())
        lines.append(f"- `{name}{SUFFIX[fmt]}`: inputs {inputs} -> {graph.output}")
    if graphs and "latents" in next(iter(graphs.values())).inputs:
        lines.append("Latents are standard normal draws; images are floats in [0, 1], (N, C, H, W).")
    lines += ["", "## Intended use and limitations",
              f"- Research and teaching: a small model trained on `{cfg.data.name}`; its images reflect that data "
              "and its biases, at its resolution, and nothing else.",
              "- Not for deciding anything about people, nor for passing generated images off as real.",
              "- Numbers above hold for the protocol stated with them only (their feature extractor, sample "
              "count and reference split); they do not compare with numbers from other papers' protocols.", ""]
    return "\n".join(lines)
