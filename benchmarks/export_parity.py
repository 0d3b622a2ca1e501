"""Parity of genforge's exports with the runs they come from (not library code).

For each --run: exports it as safetensors, ONNX and torch.export into a temporary folder, then
compares, on --n fresh inputs per graph (seeded), the largest absolute difference, and the largest
share of the tests' allowance atol + rtol |want| (1e-5 + 1e-3 |want|) that a difference uses, of
    ONNX Runtime (CPU)         against the PyTorch graph module (eager)
    the torch.export program   against the same eager module
    genforge.load_exported     against the run's own networks (safetensors)
The baseline in the same run: eager against itself on a second call (0 unless nondeterministic).

    PYTHONPATH=src python benchmarks/export_parity.py --runs runs/demo-dcgan runs/vae runs/p2p --n 64
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch


def fresh_inputs(graph, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Inputs like the graph's examples with batch size n: labels in range (and one past it), latents
    standard normal, images and noise levels uniform in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, example in graph.inputs.items():
        if example.dtype == torch.int64:
            out[name] = torch.randint(0, int(example.max()) + 2, (n,), generator=g)
        elif name == "latents":
            out[name] = torch.randn(n, *example.shape[1:], generator=g)
        else:
            out[name] = torch.rand(n, *example.shape[1:], generator=g)
    return out


RTOL, ATOL = 1e-3, 1e-5  # the ONNX parity tolerance of tests/test_export.py (issue 16)


def errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(largest |got - want|, largest share of the allowance atol + rtol |want| used; <= 1 passes).
    A plain relative error means little for pixels near 0, where 1e-7 apart is 10% apart."""
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(diff.max()), float((diff / (ATOL + RTOL * np.abs(want.astype(np.float64)))).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--n", type=int, default=64, help="inputs per graph (the batch size; exports use 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import onnxruntime as ort

    import genforge
    from genforge.conditioning import Condition
    from genforge.export import export_run, graphs_of
    from genforge.families.contract import SampleRequest

    print(f"{'run':<22}{'graph':<11}{'check':<34}{'max abs':>11}{'of allowance':>14}")
    for run_dir in args.runs:
        run = genforge.load_run(run_dir)
        name = Path(run_dir).name
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("safetensors", "onnx", "torch-export"):
                export_run(run, Path(tmp) / fmt, fmt)
            for graph_name, graph in graphs_of(run).items():
                inputs = fresh_inputs(graph, args.n, args.seed)
                with torch.no_grad():
                    want = graph.module(*inputs.values()).numpy()
                    again = graph.module(*inputs.values()).numpy()
                session = ort.InferenceSession(str(Path(tmp) / "onnx" / f"{graph_name}.onnx"),
                                               providers=["CPUExecutionProvider"])
                (onnx_out,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
                program = torch.export.load(Path(tmp) / "torch-export" / f"{graph_name}.pt2").module()
                with torch.no_grad():
                    exported = program(*inputs.values()).numpy()
                for check, got in (("baseline: eager vs eager", again), ("ONNX Runtime vs eager", onnx_out),
                                   ("torch.export vs eager", exported)):
                    print(f"{name:<22}{graph_name:<11}{check:<34}{errors(got, want)[0]:>11.2e}{errors(got, want)[1]:>14.3f}")
            loaded = genforge.load_exported(Path(tmp) / "safetensors")
            if run.model_family.from_noise:
                labels = torch.tensor([0]) if run.config.model.num_classes else None
                a, b = loaded.sample(args.n, seed=args.seed, labels=labels), run.sample(args.n, seed=args.seed, labels=labels)
            else:
                m = run.config.model
                source = torch.randint(0, 256, (args.n, m.channels, m.image_size, m.image_size), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(args.seed))
                request = SampleRequest(args.n, cond=Condition(image=source))
                a, b = loaded.draw(request), run.draw(request)
            print(f"{name:<22}{'sample':<11}{'safetensors reload vs the run':<34}"
                  f"{errors(a.numpy(), b.numpy())[0]:>11.2e}{errors(a.numpy(), b.numpy())[1]:>14.3f}")


if __name__ == "__main__":
    main()
