"""Text-to-image agreement benchmark: a text-conditioned run's samples at several guidance weights
against the real test images with their own captions (the ceiling) and with shuffled captions
(the floor), all measured in the same process with the same evaluators and prompts.

    python benchmarks/bench_text2image.py --run RUN --text-evaluator TE.pt --digit-evaluator MNIST.pt \\
        --n 300 --guidance 0,1,3 --sampler dpm2m --steps 12 [--json out.json]
    python benchmarks/bench_text2image.py --data folder:captions --text-evaluator TE.pt --digit-evaluator D.pt --n 500

With --data instead of --run it scores only the real-image rows (ceiling and floor) of that
captioned dataset: the same subset, prompts and numbers a run on it would get.

Columns: R-precision (true caption among 100, top-1; chance 0.01), mean image-caption cosine, FID
in the dual encoder's image features, and for the built-in captioned digits the accuracy of each
attribute on seen / held-out digit-colour combinations; the last columns are each row's
R-precision and mean attribute accuracy as a ratio of the ceiling's.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genforge.metrics.text_agreement import evaluate_text_data, evaluate_text_run, format_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a text-to-image run: its samples and its data's real rows")
    source.add_argument("--data", help="a captioned dataset (folder:PATH): only the real rows, no run needed")
    p.add_argument("--data-root")
    p.add_argument("--text-evaluator", required=True)
    p.add_argument("--digit-evaluator")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--guidance", default="0,1,3")
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.run:
        from genforge.run import load_run

        run = load_run(args.run)
        result = evaluate_text_run(run, args.text_evaluator, args.digit_evaluator, n=args.n, seed=args.seed,
                                   guidances=tuple(float(w) for w in args.guidance.split(",")), steps=args.steps,
                                   sampler=args.sampler)
        what = f"run {args.run} at step {run.step}"
    else:
        result = evaluate_text_data(args.data, args.data_root, args.text_evaluator, args.digit_evaluator, n=args.n,
                                    seed=args.seed)
        what = f"data {args.data} (real rows only)"
    print(f"{what}; {result['protocol']['n']} prompts; {time.perf_counter() - start:.0f}s with {args.threads} thread(s)")
    print(format_table(result))
    rows = result["rows"]
    ceiling = rows["real, own captions (ceiling)"]

    def mean_attributes(row: dict) -> float:
        values = [v for part in ("seen", "heldout") for v in row.get(part, {}).values()]
        return sum(values) / len(values) if values else float("nan")

    print(f"\n{'ratio to the ceiling':34} {'R-prec':>7} {'attributes (mean)':>18}")
    for label, row in rows.items():
        print(f"{label:34} {row['r_precision'] / max(ceiling['r_precision'], 1e-9):7.3f} "
              f"{mean_attributes(row) / mean_attributes(ceiling):18.3f}")
    if args.json:
        from genforge.imageio import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
