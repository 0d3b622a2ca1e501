"""Latent-space tools for trained VAEs: encode and decode, reconstruction grids, interpolation
between two real images, latent traversals and the 2-D latent map.

All functions take a loaded run (``genforge.load_run(dir)``) whose family is "vae". Images go in
as uint8 (N, C, H, W) tensors (``load_images`` reads PNG/JPEG files) or floats in [0, 1]; images
come out as floats in [0, 1] on the CPU, ready for ``genforge.imageio.save_grid``. A latent code is the
posterior mean E[z|x] (no sampling), so encoding is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data import load_split
from ...errors import GenforgeError
from ...imageio import IMAGE_SUFFIXES, atomic_path, image_array, image_files, open_image, save_grid
from .sample import generate_vae


def _check_vae(run) -> None:
    if run.family != "vae":
        raise GenforgeError(f"model {run.config.model.name} is not a VAE; encode, decode and the latent tools "
                            "need a run of vae-mlp, vae-conv, cvae-mlp or cvae-conv")


def load_images(path: str | Path, channels: int) -> tuple[torch.Tensor, list[Path]]:
    """Read one image file, or every image file in a folder (sorted by name), as uint8 (N, C, H, W)
    with `channels` channels (1: luma, 3: RGB). Returns the images and their paths."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise GenforgeError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                "point --input at images")
    elif path.is_file():
        files = [path]
    else:
        raise GenforgeError(f"{path} does not exist; pass an image file or a folder of images to --input")
    arrays = [image_array(open_image(f), "L" if channels == 1 else "RGB") for f in files]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise GenforgeError(f"the images in {path} have different sizes {sorted(sizes)}; give images of one size")
    stacked = np.stack(arrays)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous(), files


def _as_unit(run, images: torch.Tensor) -> torch.Tensor:
    """Check images against the model's shape; return floats in [0, 1] on the run's device."""
    m = run.config.model
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise GenforgeError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if (h, w) != (m.image_size, m.image_size):
        raise GenforgeError(f"images are {h}x{w} but the model was trained on {m.image_size}x{m.image_size}; "
                            f"resize them to {m.image_size}x{m.image_size} first")
    if c != m.channels:
        raise GenforgeError(f"images have {c} channel(s) but the model takes {m.channels}; convert them first")
    if n == 0:
        raise GenforgeError("no images to encode")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return x.to(run.device)


@torch.no_grad()
def encode(run, images: torch.Tensor, labels=None, batch_size: int = 500) -> torch.Tensor:
    """Posterior means E[z|x] (N, latent_dim) on the CPU for uint8 or [0, 1] images (N, C, H, W).
    Conditional models need labels (one, or one per image)."""
    _check_vae(run)
    x = _as_unit(run, images)
    labels = run.check_labels(len(x), labels)
    vae = run.networks["vae"]
    means = []
    for i, chunk in enumerate(x.split(batch_size)):
        cond = () if labels is None else (labels[i * batch_size:(i + 1) * batch_size],)
        means.append(vae.encode(chunk, *cond)[0].float())
    return torch.cat(means).cpu()


@torch.no_grad()
def decode(run, z: torch.Tensor, labels=None) -> torch.Tensor:
    """Decoder means in [0, 1] (N, C, H, W) on the CPU for latent codes z (N, latent_dim)."""
    _check_vae(run)
    z = torch.as_tensor(z, dtype=torch.float32)
    latent_dim = run.config.model.latent_dim
    if z.ndim != 2 or z.shape[1] != latent_dim or len(z) == 0:
        raise GenforgeError(f"latent codes must have shape (N, {latent_dim}) for this model, got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise GenforgeError("latent codes contain NaN or infinite values")
    labels = run.check_labels(len(z), labels)
    return generate_vae(run.networks["vae"], z.to(run.device), run.config.vae.reconstruction, labels).cpu()


def reconstruct(run, images: torch.Tensor, labels=None) -> torch.Tensor:
    """decode(encode(x)): the reconstructions from the posterior means."""
    return decode(run, encode(run, images, labels), labels)


def reconstruction_grid(run, images: torch.Tensor, labels=None, per_row: int = 8) -> tuple[torch.Tensor, int]:
    """Inputs above their reconstructions: rows alternate `per_row` inputs, then the same images
    reconstructed. Returns (images, nrow) for save_grid."""
    x = _as_unit(run, images).cpu()
    rec = reconstruct(run, images, labels)
    rows = []
    for start in range(0, len(x), per_row):
        a, b = x[start:start + per_row], rec[start:start + per_row]
        pad = per_row - len(a)
        if pad:  # a short last row: fill with black so that inputs stay above their reconstructions
            a, b = (torch.cat([t, t.new_zeros(pad, *t.shape[1:])]) for t in (a, b))
        rows += [a, b]
    return torch.cat(rows), per_row


def interpolate(run, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 10, labels=None) -> torch.Tensor:
    """Decode `steps` points on the straight line between the latent codes of two real images
    (endpoints included: the first and last images are their reconstructions)."""
    if steps < 2:
        raise GenforgeError(f"interpolation needs at least 2 steps, got {steps}")
    pair = torch.stack([_as_unit(run, image_a)[0], _as_unit(run, image_b)[0]]).cpu()
    z = encode(run, pair, labels)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    path = (1 - t) * z[0] + t * z[1]
    return decode(run, path, labels)


def traversal(run, image: torch.Tensor | None = None, steps: int = 9, span: float = 3.0, labels=None) -> torch.Tensor:
    """One row per latent dimension: that coordinate swept over [-span, span] while the others stay
    at the code of `image` (or at 0, the prior's mean). Returns latent_dim * steps images."""
    latent_dim = run.config.model.latent_dim
    base = encode(run, image, labels)[0] if image is not None else torch.zeros(latent_dim)
    values = torch.linspace(-span, span, steps)
    z = base.repeat(latent_dim * steps, 1)
    for dim in range(latent_dim):
        z[dim * steps:(dim + 1) * steps, dim] = values
    return decode(run, z, labels)


def latent_map(run, side: int = 20, labels=None) -> torch.Tensor:
    """For a 2-D latent: decode a side x side grid of z placed at Gaussian quantiles of evenly spaced
    probabilities, so the map covers the prior evenly (Kingma and Welling 2014, figure 4)."""
    latent_dim = run.config.model.latent_dim
    if latent_dim != 2:
        raise GenforgeError(f"the latent map needs a 2-dimensional latent, this model has {latent_dim}; "
                            "train with --set model.latent_dim=2")
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / side, 1 - 0.5 / side, side))
    rows, cols = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")  # z2 grows upwards
    z = torch.stack([cols.flatten(), rows.flatten()], dim=1)
    return decode(run, z, labels)


def write_pictures(run, images: torch.Tensor, out_dir: str | Path, labels: torch.Tensor | None = None,
                   steps: int = 10) -> list[Path]:
    """Write reconstructions.png, interpolation.png, traversal.png and (2-D latents)
    latent-map.png into out_dir from a few real images (at least 2). Returns the paths written.

    Conditional models: `labels` gives each image's class; the interpolation, traversal and map use
    the first image's class.
    """
    _check_vae(run)
    if len(images) < 2:
        raise GenforgeError(f"the latent tools need at least 2 images, got {len(images)}")
    out_dir = Path(out_dir)
    first = None if labels is None else labels[:1]
    grid, nrow = reconstruction_grid(run, images, labels)
    written = [save_grid(grid, out_dir / "reconstructions.png", nrow=nrow)]
    # Interpolate between the first image and the most different of the others (in latent space),
    # so the path crosses something rather than two near-identical codes.
    codes = encode(run, images, labels)
    other = int((codes - codes[0]).norm(dim=1).argmax())
    written.append(save_grid(interpolate(run, images[0], images[other], steps, first), out_dir / "interpolation.png",
                             nrow=steps))
    written.append(save_grid(traversal(run, images[:1], steps, labels=first), out_dir / "traversal.png", nrow=steps))
    if run.config.model.latent_dim == 2:
        written.append(save_grid(latent_map(run, labels=first), out_dir / "latent-map.png", nrow=20))
    return written


def run_images(run, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n images (and labels) spread evenly over the run's dataset: its test split if it has one,
    else the training split. Evenly spaced indices (0, step, 2 step, ...) rather than the first n,
    so that a split stored class by class (the CIFAR-10 JPEG zip) still gives every class."""
    try:
        data = load_split(run.config.data, "test")
    except GenforgeError:
        data = load_split(run.config.data)
    index = torch.arange(min(n, len(data.images))) * max(1, len(data.images) // n)
    labels = data.labels[index] if run.config.model.num_classes and data.labels is not None else None
    return data.images[index], labels


def save_latents(z: torch.Tensor, path: str | Path) -> Path:
    """Save codes as a float32 .npy file (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, z.numpy().astype(np.float32))
    return path


def load_latents(path: str | Path) -> torch.Tensor:
    """Read codes from a .npy file: (N, latent_dim), or a single code (latent_dim,)."""
    path = Path(path)
    if not path.is_file():
        raise GenforgeError(f"{path} does not exist; pass a .npy file written by genforge encode")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise GenforgeError(f"{path} is not a readable .npy array ({type(exc).__name__}); "
                            "pass a file written by genforge encode or numpy.save") from None
    if not np.issubdtype(array.dtype, np.number):
        raise GenforgeError(f"{path} holds {array.dtype} values; latent codes must be numbers")
    z = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return z.unsqueeze(0) if z.ndim == 1 else z
