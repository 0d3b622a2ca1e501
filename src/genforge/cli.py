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
            "genforge train --model dcgan --data zip:cifar10-jpeg/train.zip --out runs/cifar --set data.hflip=true",
            "genforge train --model dcgan --data cifar10 --download --out runs/cifar10",
            "genforge train --config my.yaml --set train.lr=0.001 --dry-run",
            "genforge train --model pix2pix --data paired:pairs/edges2digits --out runs/edges2digits --set model.width=16"))
    p.add_argument("--preset", help="named settings to start from (listed by genforge info)")
    from .config import SECTIONS

    p.add_argument("--config", help=f"YAML or TOML file with the sections {', '.join(SECTIONS)} "
                                    "(each a mapping of settings; genforge info --settings lists them)")
    p.add_argument("--model", help="model name (see genforge info): gan-mlp, dcgan, cdcgan, resnet-gan, resnet-cgan, "
                                   "vae-mlp, vae-conv, cvae-mlp, cvae-conv, pix2pix, diffusion-unet, cdiffusion-unet, "
                                   "tdiffusion-unet")
    p.add_argument("--data", help="dataset name (see genforge info) or SOURCE: folder:PATH, zip:PATH, npz:PATH, paired:PATH")
    p.add_argument("--data-root", help="folder holding a named dataset's files")
    p.add_argument("--skip-bad", action="store_true", default=None,
                   help="skip unreadable or mismatched image files with a warning instead of failing")
    p.add_argument("--download", action="store_true",
                   help="download the named dataset first if it is not on disk (never done otherwise)")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATA)")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="adam or sgd (plain gradient descent)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="numeric precision of the forward passes (default auto: bf16 on CPUs with native bf16 "
                        "and on recent GPUs, fp16 on older GPUs, fp32 otherwise)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any setting, e.g. --set gan.ema_decay=0 (repeatable)")
    p.add_argument("--log", choices=["jsonl", "tensorboard"],
                   help="jsonl (default: metrics.jsonl and the console) or tensorboard (also TensorBoard event files "
                        "in OUT/tensorboard; needs the extra tensorboard)")
    p.add_argument("--accumulate", type=int, metavar="K",
                   help="gradient accumulation: each step in K micro-batches of the batch (the same global batch)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="compute eval.metrics (default FID, KID, IS, P/R) every N steps into metrics.jsonl")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)


def _train_overrides(args) -> list[dict]:
    from .config import parse_override

    flags = {
        "model": {"name": args.model},
        "data": {"name": args.data, "root": args.data_root, "skip_bad": args.skip_bad},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
                  "seed": args.seed, "device": args.device, "precision": args.precision,
                  "log": args.log, "accumulate": args.accumulate},
        "eval": {"every": args.eval_every},
    }
    flags = {s: {k: v for k, v in d.items() if v is not None} for s, d in flags.items()}
    return [flags] + [parse_override(text) for text in args.set]


def _cmd_train(args) -> int:
    import yaml

    from .families.registry import load_data, resolve_config, resolve_model
    from .rundir import slug
    from .training import train

    cfg = resolve_config(args.preset, args.config, _train_overrides(args))
    if args.download and not args.dry_run:
        from .data import data_root, split_source
        from .data.download import download_dataset

        if split_source(cfg.data.name) is None:
            download_dataset(cfg.data.name, data_root(cfg.data.name, cfg.data.root or None))
    out = Path(args.out or f"runs/{cfg.model.name}-{slug(cfg.data.name)}")
    if args.dry_run:
        cfg = resolve_model(cfg, load_data(cfg))
        print(f"# {_dry_run_outcome(cfg, out)}")
        print(f"# resolved configuration for {out}")
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = train(cfg, out, quiet=args.quiet)
    if result.stopped_by_signal:  # 128 + the signal's number, as a shell reports it: 130 for SIGINT, 143 for SIGTERM
        import signal

        return 128 + signal.Signals[result.stopped_by_signal].value
    if result.rank:  # torchrun: rank 0 reports for the job
        return 0
    print(f"run: {result.run_dir} (step {result.step})")
    print(f"samples: {result.samples}")
    return 0


def _dry_run_outcome(cfg, out: Path) -> str:
    """What `train` would do with `out`: start, resume from which step, or refuse."""
    from .config import config_diff
    from .rundir import CONFIG_FILE, list_checkpoints, read_saved_config
    from .training.loop import RESUMABLE_CHANGES

    if not (out / CONFIG_FILE).is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            return f"would refuse: {out} exists and is not a genforge run"
        return f"would start a new run in {out} (0 of {cfg.train.steps} steps)"
    saved = read_saved_config(out)
    if cfg.train.precision == "auto":  # resuming with auto keeps the run's saved precision
        from .config import replace

        cfg = replace(cfg, train={"precision": saved.train.precision})
    conflicts = config_diff(saved, cfg, RESUMABLE_CHANGES)
    if conflicts:
        return f"would refuse: {out} holds a run with other settings ({'; '.join(conflicts[:3])})"
    found = list_checkpoints(out)
    step = found[-1][0] if found else 0
    if step >= cfg.train.steps:
        return f"would find {out} finished (step {step} of {cfg.train.steps}) and only re-draw its samples"
    return f"would resume {out} from step {step} (of {cfg.train.steps})"


# --- sample -----------------------------------------------------------------------------------------

def _add_sample(sub) -> None:
    p = sub.add_parser(
        "sample", help="draw images from a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("genforge sample --run runs/dcgan --n 64 --seed 0 --out grid.png",
                         "genforge sample --run runs/cgan-mnist --class all --n 80 --out classes.png",
                         "genforge sample --run runs/cgan-mnist --class 7 --n 64 --truncation 0.7 --out sevens.png",
                         "genforge sample --run runs/vae --n 100 --separate --out samples/",
                         "genforge sample --run runs/diffusion --sampler heun --steps 18 --out grid.png",
                         "genforge sample --run runs/cdiffusion --class all --guidance 2 --out classes.png",
                         "genforge sample --run runs/diffusion --init photo.png --strength 0.5 --n 8 --out edits.png",
                         "genforge sample --run runs/diffusion --init photo.png --mask mask.png --n 8 --out filled.png",
                         "genforge sample --run runs/captions --prompt \"a large red 7 in the top left\" --n 16 --guidance 3 "
                         "--out sevens.png",
                         "genforge sample --run runs/captions --prompts prompts.txt --n 8 --out prompts.png"))
    p.add_argument("--run", required=True, help="run directory written by genforge train")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same images")
    p.add_argument("--class", dest="class_", metavar="K|all",
                   help="class-conditional models: draw class K, or 'all' for one row per class")
    p.add_argument("--out", default="samples.png", help="PNG file for the grid, or a folder with --separate")
    p.add_argument("--nrow", type=int, default=0, help="images per grid row (default: square)")
    p.add_argument("--separate", action="store_true", help="write one PNG per image into the --out folder")
    p.add_argument("--force", action="store_true", help="replace an existing --out file even if it is not an image")
    p.add_argument("--truncation", type=float, default=0.0, metavar="T",
                   help="truncation trick: redraw latent values outside [-T, T] (e.g. 0.7; default off); "
                        "StyleGAN2: psi in (0, 1], w moved toward the average w")
    p.add_argument("--truncation-cutoff", type=int, metavar="N",
                   help="StyleGAN2: truncate only the first N layers' w (the coarse styles)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default: the same images on every machine) or bf16 (autocast + channels-last: "
                        "faster on CPUs with native bf16 and on GPUs; images differ by bf16 rounding)")
    diffusion = p.add_argument_group("diffusion models (defaults: the run's diffusion.sampler, steps, eta, guidance)")
    diffusion.add_argument("--prompt", help="text-to-image models: what to draw, e.g. \"a large red 7 in the top left\"")
    diffusion.add_argument("--prompts", metavar="FILE",
                           help="text-to-image models: a UTF-8 file of prompts, one a line: one grid row per prompt "
                                "(--n images each); the prompts are written beside the grid (OUT.txt)")
    diffusion.add_argument("--sampler", help="ddpm (ancestral), ddim, heun (EDM) or dpm2m (DPM-Solver++(2M))")
    diffusion.add_argument("--steps", type=int, help="sampling steps (heun spends 2 x steps - 1 network evaluations)")
    diffusion.add_argument("--eta", type=float, help="DDIM's eta in [0, 1]: 0 deterministic, 1 DDPM-like noise")
    diffusion.add_argument("--guidance", type=float, metavar="W",
                           help="classifier-free guidance weight (0: the conditional model; e.g. 2)")
    diffusion.add_argument("--init", metavar="PHOTO", help="edit this image (SDEdit; with --mask: inpaint it)")
    diffusion.add_argument("--strength", type=float,
                           help="SDEdit: fraction of the sampling redone, in [0, 1] (default 0.5; 1 with --mask)")
    diffusion.add_argument("--mask", metavar="MASK", help="inpainting: white pixels are redrawn, black ones kept")
    p.set_defaults(func=_cmd_sample)


def _read_image(path: str | None, mode: str):
    """An image file as uint8 (C, H, W) in mode 'L' or 'RGB', or None."""
    import torch

    from .imageio import image_array, open_image

    if path is None:
        return None
    if not Path(path).is_file():
        raise GenforgeError(f"{path} does not exist; give an image file")
    return torch.from_numpy(image_array(open_image(path), mode).copy()).permute(2, 0, 1).contiguous()


def _class_labels(text: str | None):
    """--class K -> a one-element tensor (None when not given)."""
    import torch

    if text is None:
        return None
    try:
        return torch.tensor([int(text)])
    except ValueError:
        raise GenforgeError(f"--class takes a class index (sample also takes 'all'), got {text!r}") from None


def _cmd_sample(args) -> int:
    import torch

    from .imageio import check_overwrite, save_grid, save_separate
    from .run import load_run

    if not args.separate:
        check_overwrite(args.out, args.force)  # before the model is loaded and sampled
    run = load_run(args.run, device=args.device, precision=args.precision)
    labels, nrow = None, args.nrow or None
    if args.class_ == "all":
        classes = run.config.model.num_classes
        if not classes:
            raise GenforgeError(f"--class all needs a class-conditional model; {run.config.model.name} is not one")
        per_class = max(1, args.n // classes)
        labels, nrow = torch.arange(classes).repeat_interleave(per_class), per_class
        args.n = len(labels)
    else:
        labels = _class_labels(args.class_)
    mode = "L" if run.config.model.channels == 1 else "RGB"
    prompts = _read_prompts(args)
    if prompts is not None and len(prompts) > 1:  # one row of --n images per prompt
        nrow = args.n
        args.n *= len(prompts)
        prompts = [p for p in prompts for _ in range(nrow)]
    options = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta, "guidance": args.guidance,
               "init": _read_image(args.init, mode), "strength": args.strength, "mask": _read_image(args.mask, "L"),
               "prompt": prompts, "truncation_cutoff": args.truncation_cutoff}
    images = run.sample(args.n, seed=args.seed, labels=labels, truncation=args.truncation, **options)
    report = run.last_report
    about = f" ({', '.join(f'{k} {v}' for k, v in report.items())})" if report else ""
    if args.separate:
        paths = save_separate(images, args.out)
        print(f"wrote {len(paths)} images to {args.out}{about}")
    else:
        print(f"wrote {save_grid(images, args.out, nrow=nrow, force=args.force)}{about}")
    if args.prompts:
        from .imageio import atomic_write_text

        rows = _read_prompts(args)
        where = Path(args.out).with_suffix(".txt") if not args.separate else Path(args.out) / "prompts.txt"
        atomic_write_text(where, "".join(f"row {i + 1}: {p}\n" for i, p in enumerate(rows)))
        print(f"wrote {where} (the prompt of each row)")
    return 0


def _read_prompts(args) -> list[str] | None:
    """--prompt, or the lines of --prompts FILE (empty lines skipped); None without either."""
    if args.prompt is not None and args.prompts:
        raise GenforgeError("give --prompt TEXT or --prompts FILE, not both")
    if args.prompt is not None:
        if not args.prompt.strip():
            raise GenforgeError("--prompt is empty; describe the image, e.g. --prompt \"a large red 7\"")
        return [args.prompt]
    if not args.prompts:
        return None
    try:
        text = Path(args.prompts).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise GenforgeError(f"prompts file {args.prompts} does not exist; write one prompt a line") from None
    except UnicodeDecodeError:
        raise GenforgeError(f"prompts file {args.prompts} is not UTF-8 text; save it as UTF-8") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise GenforgeError(f"prompts file {args.prompts} holds no prompt; write one prompt a line")
    return prompts


# --- encode / decode / vae-tools (VAEs) ---------------------------------------------------------------

def _add_encode(sub) -> None:
    p = sub.add_parser(
        "encode", help="VAEs: image files -> latent codes (.npy, posterior means)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("genforge encode --run runs/vae --input digits/ --out z.npy",
                         "genforge encode --run runs/cvae --input seven.png --class 7 --out z.npy"))
    p.add_argument("--run", required=True, help="run directory of a VAE")
    p.add_argument("--input", required=True, help="an image file, or a folder of images (sorted by name)")
    p.add_argument("--out", default="z.npy", help="output .npy file: float32 array (N, latent_dim)")
    p.add_argument("--class", dest="class_", metavar="K", help="conditional VAEs: the images' class")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args) -> int:
    from .families.vae.tools import load_images, save_latents
    from .run import load_run

    run = load_run(args.run, device=args.device)
    images, files = load_images(args.input, run.config.model.channels)
    z = run.encode(images, _class_labels(args.class_))
    print(f"wrote {save_latents(z, args.out)} ({len(files)} codes of size {z.shape[1]}, in the order of the sorted file names)")
    return 0


def _add_decode(sub) -> None:
    p = sub.add_parser(
        "decode", help="VAEs: latent codes (.npy) -> images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("genforge decode --run runs/vae --input z.npy --out decoded/",
                         "genforge decode --run runs/vae --input z.npy --out decoded.png"))
    p.add_argument("--run", required=True, help="run directory of a VAE")
    p.add_argument("--input", required=True, help=".npy file of shape (N, latent_dim) (or one code of latent_dim)")
    p.add_argument("--out", required=True, help="a folder (one PNG per code) or a .png file (one grid)")
    p.add_argument("--class", dest="class_", metavar="K", help="conditional VAEs: the class to decode")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_decode)


def _cmd_decode(args) -> int:
    from .families.vae.tools import load_latents
    from .imageio import save_grid, save_separate
    from .run import load_run

    run = load_run(args.run, device=args.device)
    images = run.decode(load_latents(args.input), _class_labels(args.class_))
    if args.out.lower().endswith(".png"):
        print(f"wrote {save_grid(images, args.out)}")
    else:
        print(f"wrote {len(save_separate(images, args.out, prefix='decoded'))} images to {args.out}")
    return 0


def _add_vae_tools(sub) -> None:
    p = sub.add_parser(
        "vae-tools", help="VAEs: reconstruction grid, interpolation, latent traversal, 2-D latent map",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Writes reconstructions.png (inputs above reconstructions), interpolation.png, traversal.png "
                    "(one row per latent dimension) and, for a 2-D latent, latent-map.png.",
        epilog=_examples("genforge vae-tools --run runs/vae --out runs/vae/tools",
                         "genforge vae-tools --run runs/vae --input my-digits/ --out tools/"))
    p.add_argument("--run", required=True, help="run directory of a VAE")
    p.add_argument("--out", required=True, help="folder for the pictures")
    p.add_argument("--input", help="images to use (file or folder); default: --n images spread evenly over the run's "
                                   "test (else train) data")
    p.add_argument("--class", dest="class_", metavar="K", help="conditional VAEs with --input: the images' class")
    p.add_argument("--n", type=int, default=16, help="number of images for the reconstruction grid (default 16)")
    p.add_argument("--steps", type=int, default=10, help="images per interpolation and traversal row (default 10)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_vae_tools)


def _cmd_vae_tools(args) -> int:
    from .families.vae.tools import load_images, run_images, write_pictures
    from .run import load_run

    if args.n < 2:
        raise GenforgeError(f"--n must be at least 2, got {args.n}")
    run = load_run(args.run, device=args.device)
    if args.input:
        images, _ = load_images(args.input, run.config.model.channels)
        labels = _class_labels(args.class_)
        images = images[:args.n]
        if labels is not None:
            labels = labels.expand(len(images))
    else:
        images, labels = run_images(run, args.n)
    for path in write_pictures(run, images, args.out, labels, steps=args.steps):
        print(f"wrote {path}")
    return 0


# --- stylegan2-tools / project (StyleGAN2) ---------------------------------------------------------

def _seeds(text: str, flag: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GenforgeError(f"{flag} takes comma-separated integers, e.g. 1,2,3; got {text!r}") from None
    if not seeds:
        raise GenforgeError(f"{flag} is empty; give comma-separated seeds, e.g. 1,2,3")
    return seeds


def _add_stylegan2_tools(sub) -> None:
    p = sub.add_parser(
        "stylegan2-tools", help="StyleGAN2: style-mixing grid, truncation grid, interpolation in W",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Writes style-mixing.png (row r, column c: coarse styles, layers < --crossover, from row seed r, "
                    "fine styles from column seed c; the first row and column are the seeds' own images), "
                    "truncation.png (one row per row seed, psi 1 to 0 left to right) and interpolation.png "
                    "(straight lines in W through the row seeds).",
        epilog=_examples("genforge stylegan2-tools --run runs/stylegan2-mnist --out runs/stylegan2-mnist/tools",
                         "genforge stylegan2-tools --run runs/sg2 --rows 1,2,3 --cols 4,5,6,7 --crossover 4 --out tools/"))
    p.add_argument("--run", required=True, help="run directory of a StyleGAN2 model")
    p.add_argument("--out", required=True, help="folder for the pictures")
    p.add_argument("--rows", default="1,2,3,4", help="row seeds (coarse styles), comma-separated (default 1,2,3,4)")
    p.add_argument("--cols", default="5,6,7,8,9", help="column seeds (fine styles) (default 5,6,7,8,9)")
    p.add_argument("--crossover", type=int, help="first layer taken from the column seed (default: half the layers)")
    p.add_argument("--truncation-cutoff", type=int, metavar="N", help="truncation grid: truncate only the first N layers")
    p.add_argument("--class", dest="class_", metavar="K", help="class-conditional models: the class (default 0)")
    p.add_argument("--steps", type=int, default=8, help="interpolation images per leg (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_stylegan2_tools)


def _cmd_stylegan2_tools(args) -> int:
    from .families.stylegan2.tools import write_tools
    from .run import load_run

    rows, cols = _seeds(args.rows, "--rows"), _seeds(args.cols, "--cols")
    if args.steps < 2:
        raise GenforgeError(f"--steps must be at least 2, got {args.steps}")
    run = load_run(args.run, device=args.device)
    label = int(_class_labels(args.class_)[0]) if args.class_ is not None else None
    for path in write_tools(run, args.out, rows, cols, args.crossover, cutoff=args.truncation_cutoff, label=label,
                            steps=args.steps):
        print(f"wrote {path}")
    return 0


def _add_project(sub) -> None:
    p = sub.add_parser(
        "project", help="StyleGAN2: find the w (and noise) that reproduces a real image",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Optimises w and the noise maps so that the run's (EMA) generator reproduces --input, with a "
                    "pixel loss plus, given --evaluator, the distance of the evaluator's features. Writes "
                    "reconstruction.png, target.png, w.npy, progress.png (the target, then snapshots of the "
                    "optimisation) and loss.json into --out. Nothing is downloaded.",
        epilog=_examples("genforge project --run runs/stylegan2-mnist --input digit.png --out proj/",
                         "genforge project --run runs/sg2 --input photo.png --out proj/ --steps 500 --evaluator evaluators/e.pt"))
    p.add_argument("--run", required=True, help="run directory of a StyleGAN2 model")
    p.add_argument("--input", required=True, help="the image (of the model's size and channels)")
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    p.add_argument("--evaluator", help="evaluator file (genforge train-evaluator): add its feature distance to the loss")
    p.add_argument("--feature-weight", type=float, default=1.0, help="weight of the feature distance (default 1)")
    p.add_argument("--class", dest="class_", metavar="K", help="class-conditional models: the image's class (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimisation's noise")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_project)


def _cmd_project(args) -> int:
    import torch

    from .families.stylegan2.tools import project, write_projection
    from .imageio import image_array, open_image
    from .run import load_run

    if not Path(args.input).is_file():
        raise GenforgeError(f"{args.input} does not exist; give an image file")
    image = open_image(args.input)
    mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    target = torch.from_numpy(image_array(image, mode).copy()).permute(2, 0, 1).contiguous()
    run = load_run(args.run, device=args.device)
    features = None
    if args.evaluator:
        from .metrics.features import load_evaluator

        evaluator = load_evaluator(args.evaluator, run.device)
        size, network = run.config.model.image_size, evaluator.network.eval().requires_grad_(False)
        crop = (size - evaluator.image_size) // 2
        if evaluator.channels != run.config.model.channels or crop < 0:
            evaluator.check_compatible(size, run.config.model.channels, f"the model ({args.run})")
        # A padded run (e.g. MNIST's 28x28 in 32x32) is scored on the centre the evaluator knows.
        features = lambda x: network.features(x[..., crop:crop + evaluator.image_size,  # noqa: E731
                                                   crop:crop + evaluator.image_size])
    label = int(_class_labels(args.class_)[0]) if args.class_ is not None else None
    result = project(run, target, steps=args.steps, seed=args.seed, label=label, features=features,
                     feature_weight=args.feature_weight)
    for path in write_projection(result, args.out):
        print(f"wrote {path}")
    print(f"loss {result['loss'][0]:.4g} -> {result['loss'][-1]:.4g} after {args.steps} steps")
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
    p.add_argument("--scale", type=int, default=0,
                   help="GIF: enlarge frames this many times (default 0: to at least 256 pixels a side)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_interpolate)


def _cmd_interpolate(args) -> int:
    from .imageio import save_gif, save_grid
    from .run import load_run

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise GenforgeError(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {args.seeds!r}") from None
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".png", ".gif"):
        raise GenforgeError(f"--out must end in .png (grid) or .gif (animation), got {args.out!r}")
    if args.frame_ms <= 0 or args.scale < 0:
        raise GenforgeError("--frame-ms must be positive and --scale at least 0 (0: automatic)")
    labels = _class_labels(args.class_)
    run = load_run(args.run, device=args.device)
    images = run.interpolate(seeds, args.steps, labels=labels, truncation=args.truncation)
    if suffix == ".gif":
        # Legs share their end points: drop each leg's first frame after the first leg.
        keep = [i for i in range(len(images)) if i < args.steps or i % args.steps]
        print(f"wrote {save_gif(images[keep], args.out, frame_ms=args.frame_ms, scale=args.scale)}")
    else:
        print(f"wrote {save_grid(images, args.out, nrow=args.steps)}")
    return 0


# --- export ---------------------------------------------------------------------------------------

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run's inference networks as safetensors, ONNX or torch.export files",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Write the inference networks only (no discriminator), in eval mode, with "
                                   "export.json, config.yaml and model_card.md, into the folder --out. "
                                   "genforge sample --run DIR samples from a safetensors export.",
                       epilog=_examples("genforge export --run runs/dcgan --format safetensors --out exports/dcgan",
                                        "genforge export --run runs/dcgan --format onnx --out exports/dcgan-onnx",
                                        "genforge export --run runs/vae --format torch-export --out exports/vae-pt2",
                                        "genforge export --run runs/dcgan --out dcgan.safetensors   (one file, no card)"))
    p.add_argument("--run", required=True, help="run directory written by genforge train")
    p.add_argument("--out", required=True, help="folder for the export (or, without --format, a .safetensors file)")
    p.add_argument("--format", choices=["safetensors", "onnx", "torch-export"],
                   help="safetensors (weights, loadable by genforge.load_exported), onnx, torch-export (.pt2)")
    p.add_argument("--force", action="store_true", help="replace the export already in --out")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from .run import load_run

    if args.format is None and Path(args.out).suffix:
        print(f"wrote {load_run(args.run, device='cpu').export(args.out)}")
        return 0
    from .export import export_run

    done = export_run(load_run(args.run, device="cpu"), args.out, args.format or "safetensors", force=args.force)
    print(f"wrote a {done.format} export to {done.folder}: {', '.join(done.files)}")
    return 0


# --- serve ----------------------------------------------------------------------------------------

def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="a web page and a JSON API that draw images from trained runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a page (and the JSON API under /api/) that draws samples, animations between seeds, "
                    "or translations of an uploaded image, as each run's family offers. Loopback only unless "
                    "--host says otherwise. Needs the web extra: pip install 'genforge[web]'.",
        epilog=_examples("genforge serve --run runs/demo-dcgan",
                         "genforge serve --run runs/dcgan --run runs/vae --port 8000",
                         "genforge serve --run exports/dcgan   (a safetensors export)"))
    p.add_argument("--run", action="append", required=True, help="run directory or safetensors export (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-images", type=int, default=16, help="images per request (default 16)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for the model; more get 503 (default 8)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args) -> int:
    from .web import serve

    serve(args.run, host=args.host, port=args.port, device=args.device, max_images=args.max_images,
          queue=args.queue)
    return 0


# --- info -------------------------------------------------------------------------------------------

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a run directory, or list models, datasets and presets",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_examples("genforge info --run runs/dcgan", "genforge info",
                                        "genforge info --settings", "genforge info --preset demo-cgan"))
    p.add_argument("--run", help="run directory")
    p.add_argument("--settings", action="store_true",
                   help="list every setting (section.key), its type, default and meaning")
    p.add_argument("--preset", metavar="NAME", help="show a preset's settings (without loading its data)")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .config import PRESETS
    from .data import DATASETS
    from .families.registry import MODELS

    if args.settings:
        from .config_docs import format_settings

        print(format_settings())
        return 0
    if args.preset:
        import yaml

        from .config_docs import preset_settings
        from .families.registry import resolve_config

        print(f"# preset {args.preset}: its own settings")
        print(yaml.safe_dump(preset_settings(args.preset), sort_keys=False), end="")
        print("# all settings with this preset (model settings left at 0 are filled from the data when training)")
        print(yaml.safe_dump(resolve_config(args.preset).to_dict(), sort_keys=False), end="")
        return 0
    if not args.run:
        print("models:   " + ", ".join(f"{n} ({s.family.name})" for n, s in MODELS.items()))
        from .data import SOURCES

        print("datasets: " + ", ".join(DATASETS))
        print("sources:  " + ", ".join(f"{kind}:PATH" for kind in SOURCES))
        print("presets:  " + ", ".join(PRESETS))
        return 0
    from . import rundir as ckpt
    from .rundir import METRICS_FILE, read_metrics, read_saved_config

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise GenforgeError(f"{run_dir} is not a genforge run directory (no config.yaml); "
                            "pass the --out folder of genforge train")
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


# --- data -------------------------------------------------------------------------------------------

def _add_data(sub) -> None:
    p = sub.add_parser("data", help="describe, download or build datasets",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_examples("genforge data info mnist-5k",
                                        "genforge data info zip:cifar10-jpeg/train.zip --preview cifar.png",
                                        "genforge data download fashion-mnist",
                                        "genforge data download cifar10 --data-root data/cifar10",
                                        "genforge data make-pairs edges2digits --out pairs/edges2digits"))
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)

    info = data_sub.add_parser(
        "info", help="count, size, classes, pixel mean/std and a preview grid of a dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("genforge data info mnist --data-root ../shared/data/mnist --split test",
                         "genforge data info folder:my-photos --image-size 64 --preview photos.png",
                         "genforge data info zip:cifar10-jpeg/train.zip --skip-bad"))
    info.add_argument("source", metavar="NAME|SOURCE", help="dataset name, or folder:PATH, zip:PATH, npz:PATH")
    info.add_argument("--data-root", "--root", dest="root", help="folder holding a named dataset's files")
    info.add_argument("--split", default="train", help="train (default), test, ...")
    info.add_argument("--image-size", type=int, default=0, help="resize as training would (0: native size)")
    info.add_argument("--channels", type=int, default=0, choices=[0, 1, 3], help="convert as training would")
    info.add_argument("--skip-bad", action="store_true", help="skip bad files with a warning instead of failing")
    info.add_argument("--workers", type=int, default=0, help="decoder processes (0: automatic)")
    info.add_argument("--preview", help="PNG path for the preview grid (default: NAME-preview.png here)")
    info.add_argument("--no-preview", action="store_true", help="do not write a preview grid")
    info.set_defaults(func=_cmd_data_info)

    download = data_sub.add_parser(
        "download", help="fetch a standard dataset from its official source, verified by checksum",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download into --data-root, else $GENFORGE_DATA/NAME, else ~/.cache/genforge/data/NAME. "
                    "Interrupted downloads resume; files are renamed into place only once verified.",
        epilog=_examples("genforge data download mnist", "genforge data download cifar100 --data-root /data/cifar100"))
    download.add_argument("name", metavar="NAME", help="mnist, fashion-mnist, kmnist, cifar10, cifar100")
    download.add_argument("--data-root", "--root", dest="root", help="folder to download into")
    download.set_defaults(func=_cmd_data_download)
    _add_data_make_pairs(data_sub)
    _add_data_make_captions(data_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _cmd_data_info(args) -> int:
    from .data import load_dataset
    from .data.info import save_preview, summarize

    data = load_dataset(args.source, args.root, args.split, args.image_size or None, args.channels or None,
                        skip_bad=args.skip_bad, workers=args.workers)
    s = summarize(data)
    channel_names = ["gray"] if s.channels == 1 else ["R", "G", "B"]
    print(f"dataset:  {args.source} (split {args.split})")
    print(f"images:   {s.count:,}" + (f" ({s.skipped} bad files skipped)" if s.skipped else ""))
    print(f"size:     {s.width}x{s.height}, {s.channels} channel{'s' if s.channels > 1 else ''} "
          f"({'gray' if s.channels == 1 else 'RGB'})")
    if s.class_counts:
        print(f"classes:  {len(s.class_counts)}")
        width = max(len(n) for n in s.class_counts)
        for name, count in s.class_counts.items():
            print(f"  {name:<{width}}  {count:>8,}")
    else:
        print("classes:  none (unlabelled)")
    if s.captions:
        c = s.captions
        print(f"captions: {c.count:,} ({c.per_image_min}..{c.per_image_max} per image), {c.words_min}..{c.words_max} "
              f"words (mean {c.words_mean:.1f})")
        print(f"words:    {c.vocabulary:,} distinct, {c.once:,} in a single caption; most frequent: "
              + ", ".join(f"{w} {n}" for w, n in c.top_words))
        for i in range(min(3, s.count)):
            print(f"  {i}: {data.captions[i][0]}")
    print("mean:     " + "  ".join(f"{c} {m:.2f}" for c, m in zip(channel_names, s.mean)) + "  (0..255)")
    print("std:      " + "  ".join(f"{c} {v:.2f}" for c, v in zip(channel_names, s.std)) + "  (0..255)")
    if not args.no_preview:
        default = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in Path(args.source).stem) or "data"
        paired = " (pairs: each row of inputs A above its row of targets B)" if data.targets is not None else ""
        if data.captions:
            paired = " (its captions, in grid order, beside it in a .txt file)"
        print(f"preview:  {save_preview(data, args.preview or f'{default}-preview.png')}{paired}")
    return 0


def _cmd_data_download(args) -> int:
    from .data import data_root
    from .data.download import download_dataset

    root = download_dataset(args.name, data_root(args.name, args.root))
    print(f"{args.name}: ready in {root}")
    return 0


def _add_data_make_pairs(data_sub) -> None:
    p = data_sub.add_parser(
        "make-pairs", help="build a paired (image-to-image) dataset offline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write side-by-side pairs (A = input | B = target) into OUT/train and OUT/test, "
                    "for genforge train --model pix2pix --data paired:OUT.",
        epilog=_examples(
            "genforge data make-pairs edges2digits --out pairs/edges2digits",
            "genforge data make-pairs inpaint-digits --source mnist --data-root ../shared/data/mnist --limit 10000 "
            "--out pairs/inpaint",
            "genforge data make-pairs colorize --source ../shared/data/cifar10-jpeg/train.zip --limit 5000 --out pairs/colorize"))
    p.add_argument("task", choices=["edges2digits", "inpaint-digits", "colorize"],
                   help="edges2digits, inpaint-digits (MNIST digits), colorize (photographs)")
    p.add_argument("--out", required=True, help="new folder for the pairs")
    p.add_argument("--source", default="", help="digits: mnist-5k (default) or mnist; colorize: a folder or zip of images")
    p.add_argument("--data-root", help="folder of the IDX files for --source mnist")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--limit", type=int, default=0,
                   help="digits: at most N pairs per split; colorize: at most N photographs in all (0 = all)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="colorize: share of photographs held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for masks, subsets and the split")
    p.set_defaults(func=_cmd_data_make_pairs)


def _cmd_data_make_pairs(args) -> int:
    from .data.make_pairs import make_pairs

    made = make_pairs(args.task, args.out, args.source, args.data_root, args.size, args.limit,
                      args.test_fraction, args.seed)
    print(f"wrote {', '.join(f'{n} {s} pairs' for s, n in made.counts.items())} to {made.out_dir}")
    print(f"train with: genforge train --model pix2pix --data paired:{made.out_dir} --out runs/{args.task}")
    return 0


def _add_data_make_captions(data_sub) -> None:
    p = data_sub.add_parser(
        "make-captions", help="build a captioned (text-to-image) dataset offline from MNIST digits",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write RGB images of one or two coloured MNIST digits on a coloured background, with "
                    "captions and attributes in metadata.jsonl, into OUT/train and OUT/test. Some digit-colour "
                    "pairs never occur in train; half of test has one (attribute heldout).",
        epilog=_examples(
            "genforge data make-captions --out captions",
            "genforge data make-captions --source mnist --data-root ../shared/data/mnist --train 20000 --out captions"))
    p.add_argument("--out", required=True, help="new folder for the dataset")
    p.add_argument("--source", default="mnist-5k", help="mnist-5k (default, embedded) or mnist (with --data-root)")
    p.add_argument("--data-root", help="folder of the IDX files for --source mnist")
    p.add_argument("--size", type=int, default=48, help="image side in pixels (default 48)")
    p.add_argument("--train", type=int, default=5000, help="training images (default 5000)")
    p.add_argument("--test", type=int, default=1000, help="test images (default 1000, half with held-out pairs)")
    p.add_argument("--pair-fraction", type=float, default=0.25, help="share of images with two digits (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="seed of every choice")
    p.set_defaults(func=_cmd_data_make_captions)


def _cmd_data_make_captions(args) -> int:
    from .data.make_captions import make_captions

    made = make_captions(args.out, args.source, args.data_root, args.size, args.train, args.test,
                         args.pair_fraction, args.seed)
    print(f"wrote {', '.join(f'{n} {s} images' for s, n in made.counts.items())} with captions to {made.out_dir} "
          f"({made.heldout} test images with held-out digit-colour pairs)")
    print(f"train with: genforge train --preset tdiffusion-captions --data folder:{made.out_dir} --out runs/captions")
    return 0


# --- translate --------------------------------------------------------------------------------------

def _add_translate(sub) -> None:
    p = sub.add_parser(
        "translate", help="translate images with a trained image-to-image (pix2pix) run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate an image or a folder of images; writes OUT/images/*.png and OUT/index.html "
                    "(input | output | target rows). With --pairs the inputs are aligned pairs and "
                    "OUT/metrics.json gets L1, PSNR and SSIM against the targets (and the identity mapping's); "
                    "with --evaluator FILE also FID and KID in that evaluator's features.",
        epilog=_examples(
            "genforge translate --run runs/edges2digits --input pairs/edges2digits/test --pairs --out results",
            "genforge translate --run runs/edges2digits --input pairs/edges2digits/test --pairs --out results "
            "--evaluator evaluators/mnist-5k-32.pt",
            "genforge translate --run runs/edges2digits --input my-edges/ --out translated",
            "genforge translate --run runs/facades --input photo.png --out out --dropout-seed 3"))
    p.add_argument("--run", required=True, help="run directory written by genforge train --model pix2pix")
    p.add_argument("--input", required=True, help="image file or folder (with --pairs: side-by-side pairs or A/ B/)")
    p.add_argument("--out", required=True, help="folder for the translated images and index.html")
    p.add_argument("--pairs", action="store_true", help="inputs are aligned pairs: score the outputs against the targets")
    p.add_argument("--dropout-seed", type=int, help="keep dropout on at inference with this seed (default: off, deterministic)")
    p.add_argument("--evaluator", metavar="FILE",
                   help="with --pairs: FID and KID of outputs vs targets in the features of this "
                        "genforge train-evaluator file (same image size and channels as the run)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args) -> int:
    from .run import load_run
    from .translate import translate_path

    run = load_run(args.run, device=args.device)
    result = translate_path(run, args.input, args.out, pairs=args.pairs, dropout_seed=args.dropout_seed,
                            evaluator=args.evaluator)
    for note in result.notes[:5]:
        print(f"note: {note}")
    print(f"translated {result.count} image(s); results page: {result.page}")
    if result.metrics:
        m = result.metrics
        print(f"L1 {m['l1']:.4f}  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}   "
              f"(identity mapping: L1 {m['identity_l1']:.4f}  PSNR {m['identity_psnr']:.2f} dB  "
              f"SSIM {m['identity_ssim']:.4f})")
        if "fid" in m:
            print(f"FID {m['fid']:.3f}  KID {m['kid_mean']:.5f}   (identity mapping: FID {m['identity_fid']:.3f}  "
                  f"KID {m['identity_kid_mean']:.5f})   evaluator sha256 {m['evaluator']['sha256'][:16]}")
    return 0


# --- eval -------------------------------------------------------------------------------------------

def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="measure a run: FID, KID, IS, precision/recall, VAE likelihood; eval.json + HTML report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure the newest checkpoint of a run against real images of its dataset. Writes "
                    "eval.json (every number with its protocol) and report.html into --out (default RUN/eval).",
        epilog=_examples("genforge eval --run runs/dcgan --evaluator evaluators/mnist.pt",
                         "genforge eval --run runs/vae --metrics fid,nll --n 5000",
                         "genforge eval --run runs/dcgan --inception-weights pt_inception-2015-12-05-6726825d.pth",
                         "genforge eval --run runs/captions --text-evaluator evaluators/captions-text.pt "
                         "--digit-evaluator evaluators/captions-digits.pt --guidance 0,1,3 --n 500"))
    p.add_argument("--run", help="run directory written by genforge train (or --samples)")
    p.add_argument("--samples", metavar="DIR|FILE.npz",
                   help="score images made by any tool instead of a run: a folder of images or an .npz with array x "
                        "(with --data, and --data-root for a named dataset; feature metrics only)")
    p.add_argument("--data", help="with --samples: the dataset whose reference split they are scored against")
    p.add_argument("--data-root", help="with --samples: folder holding that dataset's files")
    p.add_argument("--n", type=int, default=10000, help="generated images, and at most this many real ones (default 10000)")
    p.add_argument("--metrics", help="comma-separated: fid,kid,is,pr,acc,nll (default fid,kid,is,pr; "
                                     "+acc for conditional models, +nll for VAEs)")
    p.add_argument("--evaluator", help="evaluator file from genforge train-evaluator (default evaluators/DATA.pt)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth: Inception-v3 features instead")
    p.add_argument("--seed", type=int, default=0, help="latent seed of the samples; also seeds KID subsets and IS splits")
    p.add_argument("--kid-subset-size", type=int, default=0, help="images per KID subset (default min(1000, n))")
    p.add_argument("--kid-subsets", type=int, default=100, help="number of KID subsets (default 100)")
    p.add_argument("--nll-k", type=int, default=1000, help="importance samples per test image (default 1000)")
    p.add_argument("--nll-images", type=int, default=10000, help="test images for the VAE likelihood (default 10000)")
    p.add_argument("--binarize", choices=["dynamic", "threshold", "none"],
                   help="test targets of the likelihood (default dynamic for Bernoulli decoders, none for Gaussian)")
    p.add_argument("--out", help="folder for eval.json and report.html (default RUN/eval, the newest; each "
                                 "evaluation is also kept in RUN/eval/step-N)")
    text = p.add_argument_group("text-to-image runs: agreement of the images with their prompts")
    text.add_argument("--text-evaluator", metavar="FILE",
                      help="dual encoder from genforge train-evaluator --text (default evaluators/DATA-text.pt)")
    text.add_argument("--digit-evaluator", metavar="FILE",
                      help="built-in captioned digits: the digit reader for the digit accuracy (genforge "
                           "train-evaluator --digits --data DATA; an MNIST classifier also works, but reads only "
                           "about 0.8 of real images)")
    text.add_argument("--guidance", default="0", metavar="W[,W...]", help="guidance weights to sample at (default 0)")
    text.add_argument("--steps", type=int, help="sampling steps (default: the run's)")
    text.add_argument("--sampler", help="sampler (default: the run's): ddpm, ddim, heun or dpm2m")
    p.add_argument("--no-real-reference", dest="real_reference", action="store_false",
                   help="skip the real-against-real row (real images of the other split scored like samples)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from .metrics.evaluate import EvalSettings, parse_metrics
    from .metrics.report import evaluate_and_report
    from .run import load_run

    settings = EvalSettings(n=args.n, metrics=parse_metrics(args.metrics), seed=args.seed,
                            kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, nll_k=args.nll_k,
                            nll_images=args.nll_images, binarize=args.binarize or "",
                            real_reference=args.real_reference)
    log = lambda text: print(text, file=sys.stderr, flush=True)
    if bool(args.run) == bool(args.samples):
        raise GenforgeError("give either --run RUN or --samples DIR|FILE.npz (with --data NAME); see genforge eval --help")
    if args.samples:
        from .metrics.evaluate import evaluate_samples
        from .metrics.report import write_report

        if not args.data:
            raise GenforgeError("--samples needs --data NAME (the dataset to score them against), "
                                "e.g. --data mnist --data-root ../shared/data/mnist")
        result = evaluate_samples(args.samples, args.data, args.data_root or "", settings, args.evaluator,
                                  args.inception_weights, log)
        out = Path(args.out or f"{Path(args.samples).with_suffix('')}-eval")
        paths = write_report(result, out, out, None)
    else:
        run = load_run(args.run, device=args.device)
        from .families.registry import model_spec

        if "text" in model_spec(run.config.model.name).conditions:
            return _eval_text(run, args, log)
        result, paths = evaluate_and_report(run, settings, args.evaluator, args.inception_weights, args.out, log=log)
    extractor = result["protocol"].get("extractor", {})
    if extractor:
        print(f"extractor: {extractor['kind']} {extractor.get('path', '')} (sha256 {extractor['sha256'][:12]}...)")
    reference = result["protocol"]["reference"]
    print(f"protocol:  {result['protocol']['n_generated']} generated (seed {result['protocol']['sample_seed']}) vs "
          f"{reference['n']} real ({reference['data']} {reference['split']})")
    from .metrics.report import metric_direction

    real = result.get("real_against_real") or {}
    for key, value in result["metrics"].items():
        reference = f"   real against real {real[key]:.5g}" if key in real else ""
        print(f"{key + ':':<16} {value:<10.5g} {metric_direction(key):<18}{reference}".rstrip())
    print(f"wrote {paths['json']} and {paths['html']}" + (f" (kept in {paths['history']})" if "history" in paths else ""))
    return 0


def _eval_text(run, args, log) -> int:
    """genforge eval on a text-to-image run: the agreement table (metrics/text_agreement.py)."""
    import json

    from .imageio import atomic_write_text
    from .metrics.text_agreement import evaluate_text_run, format_table
    from .rundir import slug

    try:
        guidances = tuple(float(w) for w in args.guidance.split(",") if w.strip())
    except ValueError:
        raise GenforgeError(f"--guidance takes comma-separated numbers, e.g. 0,1,3; got {args.guidance!r}") from None
    evaluator = args.text_evaluator or f"evaluators/{slug(run.config.data.name)}-text.pt"
    result = evaluate_text_run(run, evaluator, args.digit_evaluator, n=min(args.n, 10000), seed=args.seed,
                               guidances=guidances or (0.0,), steps=args.steps, sampler=args.sampler, log=log)
    out = Path(args.out or Path(args.run) / "eval-text")
    out.mkdir(parents=True, exist_ok=True)
    path = atomic_write_text(out / "eval-text.json", json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"wrote {path}")
    return 0


# --- compare ----------------------------------------------------------------------------------------

def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="a table of the evaluations of several runs (from genforge eval)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One row per evaluation kept in RUN/eval (every genforge eval of the run), one column per "
                    "metric, each with its better direction; says when runs used different feature extractors.",
        epilog=_examples("genforge compare runs/dcgan runs/cgan-mnist", "genforge compare runs/* --latest"))
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories evaluated with genforge eval")
    p.add_argument("--latest", action="store_true", help="only each run's newest evaluation")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from .metrics.report import compare_table

    print(compare_table(args.runs, latest_only=args.latest))
    return 0


# --- train-evaluator --------------------------------------------------------------------------------

def _add_train_evaluator(sub) -> None:
    p = sub.add_parser(
        "train-evaluator", help="train the dataset classifier whose features FID, KID, IS and P/R use",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a small CNN classifier on a labelled dataset and save it as an evaluator file "
                    "(state dict, data name, image size, channels, classes, test accuracy).",
        epilog=_examples("genforge train-evaluator --data mnist --data-root ../shared/data/mnist --out evaluators/mnist.pt",
                         "genforge train-evaluator --data mnist-5k --epochs 2 --out evaluators/mnist-5k.pt",
                         "genforge train-evaluator --text --data folder:captions --out evaluators/captions-text.pt",
                         "genforge train-evaluator --digits --data folder:captions --out evaluators/captions-digits.pt"))
    p.add_argument("--data", required=True, help="labelled dataset name (see genforge info)")
    p.add_argument("--data-root", help="folder holding the dataset's files")
    p.add_argument("--out", help="evaluator file to write (default evaluators/DATA.pt)")
    p.add_argument("--epochs", type=int, help="passes over the training split (default 3; 10 with --text)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--image-size", type=int, help="resize the data to this side first (match your runs)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert the data to 1 or 3 channels first")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--text", action="store_true",
                   help="captioned data: train a CLIP-style image-text dual encoder (InfoNCE) instead of a classifier, "
                        "for the agreement numbers of genforge eval on text-to-image runs (default --out "
                        "evaluators/DATA-text.pt, 10 epochs)")
    p.add_argument("--digits", action="store_true",
                   help="built-in captioned digits (genforge data make-captions): train the MNIST-format digit "
                        "classifier on the digit crops of the training images, the --digit-evaluator of genforge "
                        "eval on text-to-image runs (default --out evaluators/DATA-digits.pt, 15 epochs)")
    p.add_argument("--mix-source", metavar="NAME",
                   help="with --digits: also train on the training digits of mnist-5k (default; embedded) or mnist "
                        "(with --mix-root), each rendered small and large as the set renders them; none: only the "
                        "set's own crops")
    p.add_argument("--mix-root", help="folder of the IDX files for --mix-source mnist")
    p.set_defaults(func=_cmd_train_evaluator)


def _cmd_train_evaluator(args) -> int:
    import time

    from .metrics.features import train_evaluator
    from .rundir import slug

    start = time.perf_counter()
    if args.text and args.digits:
        raise GenforgeError("--text and --digits train different evaluators; pass one of them")
    if (args.mix_source or args.mix_root) and not args.digits:
        raise GenforgeError("--mix-source and --mix-root belong to --digits; add --digits or drop them")
    if args.digits:
        from .metrics.digit_reader import train_digit_reader

        if args.image_size or args.channels:
            raise GenforgeError("--digits reads 28x28 gray crops of the RGB images; drop --image-size and --channels")
        out = Path(args.out or f"evaluators/{slug(args.data)}-digits.pt")
        reader = train_digit_reader(args.data, args.data_root, out, epochs=args.epochs or 15,
                                    batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                    mix_source=None if args.mix_source == "none" else args.mix_source or "mnist-5k",
                                    mix_root=args.mix_root, device=args.device,
                                    overwrite=args.overwrite)
        print(f"digit reader: {out} (test crop accuracy {reader.test_accuracy:.4f}, "
              f"{time.perf_counter() - start:.0f}s, sha256 {reader.sha256[:16]}...)")
        return 0
    if args.text:
        from .metrics.text_agreement import train_text_evaluator

        out = Path(args.out or f"evaluators/{slug(args.data)}-text.pt")
        text = train_text_evaluator(args.data, args.data_root, out, epochs=args.epochs or 10,
                                    batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                                    image_size=args.image_size, channels=args.channels, overwrite=args.overwrite)
        print(f"text evaluator: {out} (test R-precision {text.test_r_precision:.4f}, "
              f"{time.perf_counter() - start:.0f}s, sha256 {text.sha256[:16]}...)")
        return 0
    out = Path(args.out or f"evaluators/{slug(args.data)}.pt")
    evaluator = train_evaluator(args.data, args.data_root, out, epochs=args.epochs or 3, batch_size=args.batch_size,
                                lr=args.lr, seed=args.seed, device=args.device, image_size=args.image_size,
                                channels=args.channels, overwrite=args.overwrite)
    print(f"evaluator: {out} (test accuracy {evaluator.test_accuracy:.4f}, {time.perf_counter() - start:.0f}s, "
          f"sha256 {evaluator.sha256[:16]}...)")
    return 0


# --- entry point ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="genforge", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Train, sample and evaluate generative image models, offline, on CPU or CUDA.",
                     epilog=_examples("genforge train --preset demo-dcgan --out runs/dcgan",
                                      "genforge sample --run runs/dcgan --n 64 --out grid.png",
                                      "genforge info --run runs/dcgan",
                                      "genforge eval --run runs/dcgan --evaluator evaluators/mnist.pt"))
    parser.add_argument("--version", action="version", version=f"genforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_sample(sub)
    _add_encode(sub)
    _add_decode(sub)
    _add_vae_tools(sub)
    _add_stylegan2_tools(sub)
    _add_project(sub)
    _add_interpolate(sub)
    _add_info(sub)
    _add_export(sub)
    _add_serve(sub)
    _add_translate(sub)
    _add_data(sub)
    _add_train_evaluator(sub)
    _add_eval(sub)
    _add_compare(sub)
    _add_thread_options(sub)
    return parser


# Subcommands that compute with torch get --threads (export and info only load weights).
COMPUTING_COMMANDS = ("train", "sample", "encode", "decode", "vae-tools", "stylegan2-tools", "project", "interpolate",
                      "translate", "eval", "train-evaluator", "data info", "data make-pairs", "data make-captions",
                      "serve")


def _add_thread_options(sub) -> None:
    for name in COMPUTING_COMMANDS:
        parser = sub.choices[name.split()[0]]
        if " " in name:
            parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name.split()[1]]
        parser.add_argument("--threads", default="auto", metavar="N|auto",
                            help="CPU threads for torch (default auto: the cores other processes leave free, at "
                                 "least 1, announced in one line when fewer than the CPUs; an OMP_NUM_THREADS "
                                 "setting wins). More threads than free cores slows everything down many times")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if getattr(args, "threads", None) is not None and not getattr(args, "dry_run", False):
            from .runtime import set_threads

            set_threads(args.threads, log=lambda text: print(text, file=sys.stderr, flush=True))
        from .progress import reporting

        with reporting(not getattr(args, "quiet", False)):
            return args.func(args)
    except GenforgeError as exc:
        print(f"genforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genforge: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder, a path that is a folder: one line, no traceback
        print(f"genforge: error: {os_error_text(exc)}", file=sys.stderr)
        return 2


def os_error_text(exc: OSError) -> str:
    """'PATH: cause; fix' for an error of the operating system."""
    where = f"{exc.filename}: " if exc.filename else ""
    cause = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}{cause}; check the path, its permissions and the free disk space, then rerun"


if __name__ == "__main__":
    sys.exit(main())
