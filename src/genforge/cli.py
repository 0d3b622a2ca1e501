"""The ``genforge`` command: parses arguments, calls the library, prints where things went.

User errors (GenforgeError) are printed as one line, ``genforge: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import GenforgeError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise GenforgeError(f"{message}; see `{self.prog} --help`")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# --- train ------------------------------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model, or resume the run in --out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model. Rerunning the same command on an existing --out resumes from its newest checkpoint.",
        epilog=_examples(
            "genforge train --model dcgan --data mnist-5k --out runs/dcgan --steps 2000",
            "genforge train --preset demo-vae --out runs/vae",
            "genforge train --model vae-mlp --data mnist --data-root ../shared/data/mnist --out runs/vae-mnist",
            "genforge train --config my.yaml --set train.lr=0.001 --dry-run"))
    p.add_argument("--preset", help="named settings to start from (see genforge info --presets)")
    p.add_argument("--config", help="YAML or TOML file with sections model, data, train")
    p.add_argument("--model", help="gan-mlp, dcgan, cdcgan, resnet-gan, resnet-cgan, vae-mlp, vae-conv")
    p.add_argument("--data", help="dataset name (mnist-5k is embedded; mnist reads IDX files)")
    p.add_argument("--data-root", help="folder holding the dataset's files")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATA)")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="adam or sgd (plain gradient descent)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="numeric precision of the forward passes")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any setting, e.g. --set gan.ema_decay=0 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)


def _train_overrides(args) -> list[dict]:
    from .config import parse_override

    flags = {
        "model": {"name": args.model},
        "data": {"name": args.data, "root": args.data_root},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
                  "seed": args.seed, "device": args.device, "precision": args.precision},
    }
    flags = {s: {k: v for k, v in d.items() if v is not None} for s, d in flags.items()}
    return [flags] + [parse_override(text) for text in args.set]


def _cmd_train(args) -> int:
    import yaml

    from .config import resolve_config
    from .training import train
    from .training.loop import load_training_data, resolve_model

    cfg = resolve_config(args.preset, args.config, _train_overrides(args))
    out = Path(args.out or f"runs/{cfg.model.name}-{cfg.data.name.replace(':', '-').replace('/', '-')}")
    if args.dry_run:
        cfg = resolve_model(cfg, load_training_data(cfg))
        print(f"# resolved configuration for {out}")
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = train(cfg, out, quiet=args.quiet)
    if result.stopped_by_signal:
        return 130 if result.stopped_by_signal == "SIGINT" else 143
    print(f"run: {result.run_dir} (step {result.step})")
    print(f"samples: {result.samples}")
    return 0


# --- sample -----------------------------------------------------------------------------------------

def _add_sample(sub) -> None:
    p = sub.add_parser(
        "sample", help="draw images from a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("genforge sample --run runs/dcgan --n 64 --seed 0 --out grid.png",
                         "genforge sample --run runs/cgan-mnist --class all --n 80 --out classes.png",
                         "genforge sample --run runs/cgan-mnist --class 7 --n 64 --truncation 0.7 --out sevens.png",
                         "genforge sample --run runs/vae --n 100 --separate --out samples/"))
    p.add_argument("--run", required=True, help="run directory written by genforge train")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same images")
    p.add_argument("--class", dest="class_", metavar="K|all",
                   help="class-conditional models: draw class K, or 'all' for one row per class")
    p.add_argument("--out", default="samples.png", help="PNG file for the grid, or a folder with --separate")
    p.add_argument("--nrow", type=int, default=0, help="images per grid row (default: square)")
    p.add_argument("--separate", action="store_true", help="write one PNG per image into the --out folder")
    p.add_argument("--truncation", type=float, default=0.0, metavar="T",
                   help="truncation trick: redraw latent values outside [-T, T] (e.g. 0.7; default off)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args) -> int:
    from .run import load_run
    from .sampling import save_grid, save_separate

    import torch

    run = load_run(args.run, device=args.device)
    labels, nrow = None, args.nrow or None
    if args.class_ == "all":
        classes = run.config.model.num_classes
        if not classes:
            raise GenforgeError(f"--class all needs a class-conditional model; {run.config.model.name} is not one")
        per_class = max(1, args.n // classes)
        labels, nrow = torch.arange(classes).repeat_interleave(per_class), per_class
        args.n = len(labels)
    elif args.class_ is not None:
        try:
            labels = torch.tensor([int(args.class_)])
        except ValueError:
            raise GenforgeError(f"--class takes a class index or 'all', got {args.class_!r}") from None
    images = run.sample(args.n, seed=args.seed, labels=labels, truncation=args.truncation)
    if args.separate:
        paths = save_separate(images, args.out)
        print(f"wrote {len(paths)} images to {args.out}")
    else:
        print(f"wrote {save_grid(images, args.out, nrow=nrow)}")
    return 0


# --- interpolate ------------------------------------------------------------------------------------

def _add_interpolate(sub) -> None:
    p = sub.add_parser(
        "interpolate", help="images along a spherical path between latent seeds, as a grid or an animated GIF",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Walk the latent space from seed to seed (spherical interpolation). A .png --out is a "
                    "grid with one row per leg; a .gif --out is an animation of the whole path.",
        epilog=_examples("genforge interpolate --run runs/dcgan --seeds 1,2,3 --steps 8 --out interp.png",
                         "genforge interpolate --run runs/dcgan --seeds 1,2,3,1 --steps 16 --out walk.gif --scale 4",
                         "genforge interpolate --run runs/cgan-mnist --class 3 --seeds 0,5 --truncation 0.7 --out threes.png"))
    p.add_argument("--run", required=True, help="run directory written by genforge train")
    p.add_argument("--seeds", required=True, help="comma-separated latent seeds visited in order, e.g. 1,2,3")
    p.add_argument("--steps", type=int, default=8, help="images per leg, both ends included (default 8)")
    p.add_argument("--class", dest="class_", metavar="K", help="class-conditional models: the class to draw")
    p.add_argument("--truncation", type=float, default=0.0, metavar="T", help="truncate the seeds' latents to [-T, T]")
    p.add_argument("--out", default="interpolation.png", help=".png grid or .gif animation")
    p.add_argument("--frame-ms", type=int, default=120, help="GIF: milliseconds per frame (default 120)")
    p.add_argument("--scale", type=int, default=1, help="GIF: enlarge frames this many times (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_interpolate)


def _cmd_interpolate(args) -> int:
    from .run import load_run
    from .sampling import save_gif, save_grid

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise GenforgeError(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {args.seeds!r}") from None
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".png", ".gif"):
        raise GenforgeError(f"--out must end in .png (grid) or .gif (animation), got {args.out!r}")
    if args.frame_ms <= 0 or args.scale <= 0:
        raise GenforgeError("--frame-ms and --scale must be positive")
    labels = None
    if args.class_ is not None:
        try:
            labels = [int(args.class_)]
        except ValueError:
            raise GenforgeError(f"--class takes a class index, got {args.class_!r}") from None
    run = load_run(args.run, device=args.device)
    images = run.interpolate(seeds, args.steps, labels=labels, truncation=args.truncation)
    if suffix == ".gif":
        # Legs share their end points: drop each leg's first frame after the first leg.
        keep = [i for i in range(len(images)) if i < args.steps or i % args.steps]
        print(f"wrote {save_gif(images[keep], args.out, frame_ms=args.frame_ms, scale=args.scale)}")
    else:
        print(f"wrote {save_grid(images, args.out, nrow=args.steps)}")
    return 0


# --- info -------------------------------------------------------------------------------------------

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a run directory, or list models, datasets and presets",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_examples("genforge info --run runs/dcgan", "genforge info"))
    p.add_argument("--run", help="run directory")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .config import PRESETS
    from .data import DATASETS
    from .models import MODELS

    if not args.run:
        print("models:   " + ", ".join(f"{n} ({s.family})" for n, s in MODELS.items()))
        print("datasets: " + ", ".join(DATASETS))
        print("presets:  " + ", ".join(PRESETS))
        return 0
    from .training import checkpoint as ckpt
    from .training.loop import METRICS_FILE, read_saved_config
    from .training.report import read_metrics

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise GenforgeError(f"{run_dir} is not a genforge run directory (no config.yaml); pass the --out folder of genforge train")
    cfg = read_saved_config(run_dir)
    found = ckpt.list_checkpoints(run_dir)
    step = found[-1][0] if found else 0
    print(f"run:         {run_dir}")
    print(f"model:       {cfg.model.name} (latent {cfg.model.latent_dim}, width {cfg.model.width}, "
          f"{cfg.model.channels}x{cfg.model.image_size}x{cfg.model.image_size})")
    print(f"data:        {cfg.data.name} ({cfg.data.split})")
    print(f"progress:    step {step} of {cfg.train.steps}")
    print(f"checkpoints: {', '.join(p.name for _, p in found) or 'none'}")
    records = read_metrics(run_dir / METRICS_FILE)
    if records:
        last = {k: v for k, v in records[-1].items()}
        print("last record: " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    if found:
        from .run import load_run

        run = load_run(run_dir)
        for name, net in run.networks.items():
            print(f"{name + ':':<14} {sum(p.numel() for p in net.parameters()):,} parameters")
    return 0


# --- entry point ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="genforge", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Train, sample and evaluate generative image models, offline, on CPU or CUDA.",
                     epilog=_examples("genforge train --preset demo-dcgan --out runs/dcgan",
                                      "genforge sample --run runs/dcgan --n 64 --out grid.png",
                                      "genforge info --run runs/dcgan"))
    parser.add_argument("--version", action="version", version=f"genforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_sample(sub)
    _add_interpolate(sub)
    _add_info(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except GenforgeError as exc:
        print(f"genforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
