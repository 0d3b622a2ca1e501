"""`genforge data download NAME`: fetch a standard dataset from its official source, verified.

Each file is written to NAME.part, resumed with an HTTP Range request if a previous attempt was cut
off, checked against the MD5 its publishers list, and only then renamed to its final name. Nothing
here runs unless the user asks (the `download` command or `train --download`).

The table below is the single place where URLs and checksums live; tests point it at a local server.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import GenforgeError

CHUNK = 1 << 16
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RemoteFile:
    url: str
    md5: str
    """The MD5 published with the file (the sources publish MD5, not SHA-256)."""
    extract_to: str = ""
    """For a tarball: the folder it unpacks to (extracted, then the tarball is kept for re-checks)."""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _idx(base: str, md5s: tuple[str, str, str, str]) -> list[RemoteFile]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return [RemoteFile(base + n, m) for n, m in zip(names, md5s)]


# Official sources and their published MD5s:
#  MNIST: the mirror torchvision uses (yann.lecun.com refuses scripted downloads).
#  Fashion-MNIST: github.com/zalandoresearch/fashion-mnist README table.
#  KMNIST: github.com/rois-codh/kmnist (the MD5s torchvision checks).
#  CIFAR: www.cs.toronto.edu/~kriz/cifar.html ("python version").
DOWNLOADS: dict[str, list[RemoteFile]] = {
    "mnist": _idx("https://ossci-datasets.s3.amazonaws.com/mnist/", (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion-mnist": _idx("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
    "kmnist": _idx("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", (
        "bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
        "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
    "cifar10": [RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "c58f30108f718f92721af3b95e74349a", extract_to="cifar-10-batches-py")],
    "cifar100": [RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                            "eb9058c3a382ffc7106e4002c42a8d85", extract_to="cifar-100-python")],
}
# Datasets that cannot be fetched by a script: what to do instead.
MANUAL = {
    "celeba": "CelebA is distributed through Google Drive behind a confirmation page; download "
              "img_align_celeba.zip (and list_eval_partition.txt) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
              "and unpack it into {root}",
}
EMBEDDED = ("mnist-5k", "digits")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(remote: RemoteFile, dest: Path) -> str:
    return f"download {remote.url} by hand and place it at {dest} (MD5 {remote.md5})"


def fetch(remote: RemoteFile, dest: Path, timeout: float = TIMEOUT_S) -> bool:
    """Download one file to `dest` via dest.part (resumed if present). Returns False if `dest`
    already existed with the right checksum, True if it was downloaded."""
    if dest.is_file() and md5_of(dest) == remote.md5:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "genforge"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            # 206: the server resumes where the .part stops; 200: it sends everything again.
            mode = "ab" if have and response.status == 206 else "wb"
            expected = response.headers.get("Content-Length")
            received = 0
            with open(part, mode) as f:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    received += len(block)
            # http.client returns a short body without complaint when the server hangs up early.
            if expected is not None and received < int(expected):
                raise ConnectionError(f"connection closed after {received:,} of {int(expected):,} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete, verify it below
            pass
        else:
            raise GenforgeError(f"{remote.url} answered HTTP {exc.code} ({exc.reason}); {_by_hand(remote, dest)}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        got = part.stat().st_size if part.is_file() else 0
        kept = f"; {got:,} bytes kept in {part}, rerun to resume" if got else ""
        hint = "; offline?" if isinstance(exc, urllib.error.URLError) else ""
        raise GenforgeError(f"cannot download {remote.url} ({reason}{hint}){kept}; "
                            f"or {_by_hand(remote, dest)}") from None
    got = md5_of(part)
    if got != remote.md5:
        part.unlink()  # a resumed download cannot repair a wrong byte: start over next time
        raise GenforgeError(f"{remote.url}: checksum mismatch (MD5 {got}, published {remote.md5}); the partial "
                            f"file was removed, rerun to try again, or {_by_hand(remote, dest)}")
    part.replace(dest)
    return True


def extract(tarball: Path, folder: Path) -> None:
    """Unpack a verified tarball next to itself (the 'data' filter refuses links and paths outside)."""
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise GenforgeError(f"{tarball}: cannot unpack ({exc}); delete it and download again") from None
    inner = tmp / folder.name
    if not inner.is_dir():
        raise GenforgeError(f"{tarball} does not contain {folder.name}/; delete it and download again")
    shutil.rmtree(folder, ignore_errors=True)
    inner.replace(folder)
    shutil.rmtree(tmp, ignore_errors=True)


def download_dataset(name: str, root: Path, table: dict[str, list[RemoteFile]] | None = None,
                     timeout: float = TIMEOUT_S, log=print) -> Path:
    """Download dataset `name` into `root` (every file verified). Returns root."""
    table = DOWNLOADS if table is None else table
    if name in EMBEDDED:
        log(f"{name} ships with genforge's dependencies; nothing to download")
        return root
    if name in MANUAL:
        raise GenforgeError(MANUAL[name].format(root=root))
    if name not in table:
        raise GenforgeError(f"no download for {name!r}; downloadable: {', '.join(sorted(table))}")
    for remote in table[name]:
        dest = root / remote.filename
        # Files already there are never overwritten: the user may have placed their own copies.
        if remote.extract_to and (root / remote.extract_to).is_dir():
            log(f"{root / remote.extract_to} already present (kept)")
            continue
        if dest.is_file() and md5_of(dest) != remote.md5:
            log(f"kept {dest}: its MD5 differs from the published {remote.md5}; move it away to fetch the official file")
            continue
        plain = dest.with_suffix("") if dest.suffix == ".gz" else None
        if plain is not None and plain.is_file() and not dest.is_file():
            log(f"kept {plain} (uncompressed copy, not checked against the published MD5)")
            continue
        fetched = fetch(remote, dest, timeout)
        log(f"{'downloaded' if fetched else 'verified'} {dest}")
        if remote.extract_to:
            extract(dest, root / remote.extract_to)
            log(f"unpacked {root / remote.extract_to}")
    return root
