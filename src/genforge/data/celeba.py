"""CelebA, "Align&Cropped Images" (Liu et al. 2015, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html).

root/img_align_celeba/000001.jpg ... 202599.jpg (178x218 RGB), and optionally
root/list_eval_partition.txt ("000001.jpg 0": 0 train, 1 valid, 2 test). Images are centre-cropped
to 178x178 and resized to data.image_size (default 64, as in Radford et al. 2015's face model).
Without the partition file the only split is 'train' = all images.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GenforgeError
from .base import ImageDataset
from .images import decode_all, to_dataset
from .options import LoadOptions

DEFAULT_SIZE = 64
PARTITIONS = {"train": "0", "valid": "1", "val": "1", "test": "2"}


def image_folder(root: Path) -> Path:
    for candidate in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba", root):
        if candidate.is_dir() and any(p.suffix.lower() == ".jpg" for p in candidate.iterdir()):
            return candidate
    raise GenforgeError(f"no CelebA images in {root}; unpack img_align_celeba.zip there so that "
                        f"{root / 'img_align_celeba' / '000001.jpg'} exists")


def load_celeba(root: str | Path, split: str, options: LoadOptions) -> ImageDataset:
    root = Path(root).expanduser()
    folder = image_folder(root)
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    partition = next((p for p in (root / "list_eval_partition.txt", folder / "list_eval_partition.txt")
                      if p.is_file()), None)
    if partition is not None:
        if split not in PARTITIONS:
            raise GenforgeError(f"celeba has splits train, valid and test, not {split!r}")
        wanted = set()
        for line in partition.read_text(encoding="ascii", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == PARTITIONS[split]:
                wanted.add(parts[0])
        names = [n for n in names if n in wanted]
    elif split != "train":
        raise GenforgeError(f"{root}/list_eval_partition.txt is missing, so celeba has only split 'train' "
                            f"(all images), not {split!r}; put the partition file there")
    options = LoadOptions(**{**options.__dict__, "crop": "center",
                             "default_image_size": options.image_size or DEFAULT_SIZE})
    result = decode_all("folder", str(folder), names, options, f"celeba ({folder})", shown_prefix=f"{folder}/")
    return to_dataset(result, names, f"celeba/{split}", labelled=False)
