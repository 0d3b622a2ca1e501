"""The dataset classifier that genforge trains itself, and the evaluator file that holds it.

A small CNN trained on a labelled dataset of the registry. Its penultimate layer (after the ReLU)
gives the features for FID, KID and precision/recall; its logits give the Inception Score and the
class accuracy of conditional samples. On a dataset the size of MNIST this is the classic
"domain-specific FID" (e.g. the LeNet-feature FID used for MNIST in many GAN papers): numbers are
comparable between runs measured with the same evaluator file (its SHA-256 goes into eval.json),
never with Inception-based numbers.

Every feature module here takes float images in [0, 1], shape (N, C, H, W), on its own device.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenforgeError
from ..progress import task

EVALUATOR_FORMAT = "genforge-evaluator"


class ClassifierNet(nn.Module):
    """Three conv blocks (conv 3x3, batch norm, ReLU; max-pool after the first two), a 2x2 average
    pool, then a `feature_dim` ReLU layer (the features) and a linear classifier. Any image size >= 8."""

    def __init__(self, channels: int, num_classes: int, width: int = 16, feature_dim: int = 128):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(channels, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(16 * width, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_logits = num_classes

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, feature_dim) of images in [0, 1]."""
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) of images in [0, 1]."""
        return self.head(self.dropout(self.features(images)))


@dataclass
class Evaluator:
    """A trained classifier with what it was trained on; loaded from an evaluator file."""

    network: ClassifierNet
    data: str
    image_size: int
    channels: int
    num_classes: int
    test_accuracy: float
    sha256: str = ""
    path: str = ""
    class_names: list[str] | None = None

    def protocol(self) -> dict:
        return {"kind": "classifier", "path": self.path, "sha256": self.sha256, "data": self.data,
                "image_size": self.image_size, "channels": self.channels, "num_classes": self.num_classes,
                "test_accuracy": self.test_accuracy, "feature_dim": self.network.feature_dim}

    def check_compatible(self, image_size: int, channels: int, what: str) -> None:
        """An evaluator only measures images of the shape it was trained on."""
        if (image_size, channels) != (self.image_size, self.channels):
            raise GenforgeError(
                f"evaluator {self.path or '(in memory)'} was trained on {self.data} "
                f"({self.channels}x{self.image_size}x{self.image_size}) but {what} is "
                f"{channels}x{image_size}x{image_size}; train one on the same data with genforge train-evaluator")


class FeatureModule(nn.Module):
    """What torchmetrics and our metrics call: images in [0, 1] -> (N, D) features or logits.

    `output` is 'features' or 'logits'. Runs in eval mode in batches on the network's device and
    returns float32 on that device. `num_features` tells torchmetrics the width without a dummy pass.
    """

    def __init__(self, network: nn.Module, output: str = "features", batch_size: int = 500):
        super().__init__()
        self.network = network.eval()
        self.output = output
        self.batch_size = batch_size
        dim = network.feature_dim if output == "features" else network.num_logits
        self.num_features = int(dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.network.parameters()).device
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(device)
            x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
            out.append(self.network.features(x) if self.output == "features" else self.network(x))
        return torch.cat(out).float()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_evaluator(evaluator: Evaluator, path: str | Path, width: int) -> str:
    """Write the evaluator atomically (temporary file + rename); returns the file's SHA-256."""
    from ..imageio import atomic_write_bytes

    payload = {"format": EVALUATOR_FORMAT, "state_dict": evaluator.network.state_dict(),
               "data": evaluator.data, "image_size": evaluator.image_size, "channels": evaluator.channels,
               "num_classes": evaluator.num_classes, "test_accuracy": float(evaluator.test_accuracy),
               "width": width, "feature_dim": evaluator.network.feature_dim,
               "class_names": list(evaluator.class_names or [])}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def load_evaluator(path: str | Path, device: torch.device | str = "cpu") -> Evaluator:
    """Load an evaluator file written by `genforge train-evaluator` (no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise GenforgeError(f"evaluator file {path} does not exist; make one with "
                            f"genforge train-evaluator --data NAME --out {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickled code, random bytes
        reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"evaluator file {path} is corrupt or not an evaluator ({reason}); "
                            "train it again with genforge train-evaluator") from None
    if not isinstance(payload, dict) or payload.get("format") != EVALUATOR_FORMAT:
        raise GenforgeError(f"{path} is not a genforge evaluator file; make one with genforge train-evaluator")
    try:
        network = ClassifierNet(int(payload["channels"]), int(payload["num_classes"]), int(payload["width"]),
                                int(payload["feature_dim"]))
        network.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise GenforgeError(f"evaluator file {path} does not match the classifier ({type(exc).__name__}); "
                            "it was written by another version; train it again") from None
    return Evaluator(network.to(device).eval().requires_grad_(False), str(payload["data"]),
                     int(payload["image_size"]), int(payload["channels"]), int(payload["num_classes"]),
                     float(payload["test_accuracy"]), file_sha256(path), str(path),
                     list(payload.get("class_names") or []) or None)


@torch.no_grad()
def classifier_accuracy(network: ClassifierNet, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 1000) -> float:
    """Top-1 accuracy of `network` on uint8 or [0, 1] images (network left in eval mode)."""
    logits = FeatureModule(network, "logits", batch_size)(images)
    return float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


def train_evaluator(data: str, root: str | None = None, out: str | Path | None = None, epochs: int = 3,
                    batch_size: int = 128, lr: float = 2e-3, seed: int = 0, width: int = 16,
                    device: str = "auto", image_size: int | None = None, channels: int | None = None,
                    overwrite: bool = False, log=print) -> Evaluator:
    """Train the classifier on `data`'s train split, measure it on the test split, save it to `out`.

    Adam with a one-cycle learning-rate schedule; no augmentation. Deterministic on CPU for a seed.
    """
    from ..data import load_dataset
    from ..runtime import resolve_device

    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise GenforgeError(f"epochs, batch size and learning rate must be positive, got {epochs}, {batch_size}, {lr}")
    if out is not None and Path(out).exists() and not overwrite:
        raise GenforgeError(f"{out} exists; choose another --out or pass --overwrite")
    torch_device = resolve_device(device)
    train_set = load_dataset(data, root, "train", image_size, channels)
    if train_set.labels is None or train_set.num_classes < 2:
        raise GenforgeError(f"dataset {data} has no class labels; the evaluator is a classifier and needs a "
                            "labelled dataset (e.g. a folder with one subfolder per class)")
    try:
        test_set = load_dataset(data, root, "test", image_size, channels)
        test_split = "test"
    except GenforgeError:
        # No test split: hold out a fixed 10% of the training images instead.
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(train_set), generator=generator)
        held = order[: max(1, len(train_set) // 10)]
        kept = order[len(held):]
        from ..data import ImageDataset

        test_set = ImageDataset(train_set.images[held], train_set.labels[held], train_set.class_names, data)
        train_set = ImageDataset(train_set.images[kept], train_set.labels[kept], train_set.class_names, data)
        test_split = "10% of train"
    if train_set.image_size < 8:
        raise GenforgeError(f"images of {data} are {train_set.image_size} pixels; the classifier needs at least 8")
    num_classes = train_set.num_classes

    torch.manual_seed(seed)
    network = ClassifierNet(train_set.channels, num_classes, width).to(torch_device)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    steps_per_epoch = max(1, len(train_set) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    images = train_set.images.to(torch_device)
    labels = train_set.labels.to(torch_device)
    order_generator = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(images), generator=order_generator).to(torch_device)
        total = torch.zeros((), device=torch_device)
        progress = task(f"epoch {epoch + 1}/{epochs}", steps_per_epoch, "step")
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = images.index_select(0, idx).float().div_(255)
            loss = F.cross_entropy(network(x), labels.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach()
            progress.update(1)
        progress.close()
        network.eval()
        accuracy = classifier_accuracy(network, test_set.images, test_set.labels)
        if log:
            log(f"epoch {epoch + 1}/{epochs}  loss {float(total) / steps_per_epoch:.4f}  "
                f"{test_split} accuracy {accuracy:.4f}  {time.perf_counter() - start:.0f}s")
    evaluator = Evaluator(network.eval().requires_grad_(False), data, train_set.image_size, train_set.channels,
                          num_classes, accuracy, class_names=train_set.class_names)
    if out is not None:
        evaluator.sha256 = save_evaluator(evaluator, out, width)
        evaluator.path = str(out)
    return evaluator
