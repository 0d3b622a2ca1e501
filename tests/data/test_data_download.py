"""Downloads against a local HTTP server on 127.0.0.1 (no test reaches the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading

import datafiles
import pytest

from genforge.data import load_dataset
from genforge.data.download import RemoteFile, download_dataset
from genforge.errors import GenforgeError

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


class Server:
    """Serves `files` (path -> bytes). Paths in `truncate_once` send half their body on the first
    request (with the full Content-Length) and drop the connection. Range requests get 206."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if self.path in server.truncate_once:
                    server.truncate_once.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def quiet(*args):
    pass


def test_good_download_verified_and_not_repeated(server, tmp_path):
    server.files = {"/a.bin": PAYLOAD, "/b.bin": PAYLOAD[:100]}
    table = {"toy": [RemoteFile(server.url + "/a.bin", md5(PAYLOAD)), RemoteFile(server.url + "/b.bin", md5(PAYLOAD[:100]))]}
    download_dataset("toy", tmp_path, table, log=quiet)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and (tmp_path / "b.bin").read_bytes() == PAYLOAD[:100]
    assert not list(tmp_path.glob("*.part"))
    download_dataset("toy", tmp_path, table, log=quiet)
    assert len(server.requests) == 2  # present and verified: no second request


def test_truncated_download_keeps_part_then_resumes_with_range(server, tmp_path):
    server.files = {"/a.bin": PAYLOAD}
    server.truncate_once = {"/a.bin"}
    table = {"toy": [RemoteFile(server.url + "/a.bin", md5(PAYLOAD))]}
    with pytest.raises(GenforgeError) as exc:
        download_dataset("toy", tmp_path, table, timeout=5, log=quiet)
    message = str(exc.value)
    assert "\n" not in message and f"{server.url}/a.bin" in message and "rerun to resume" in message
    assert f"place it at {tmp_path / 'a.bin'}" in message
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 2 and not (tmp_path / "a.bin").exists()
    download_dataset("toy", tmp_path, table, timeout=5, log=quiet)
    assert server.requests[-1] == ("/a.bin", f"bytes={len(PAYLOAD) // 2}-")
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and not part.exists()


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    server.files = {"/a.bin": PAYLOAD}
    table = {"toy": [RemoteFile(server.url + "/a.bin", md5(b"something else"))]}
    with pytest.raises(GenforgeError, match=r"/a.bin: checksum mismatch \(MD5 [0-9a-f]{32}, published .*place it at"):
        download_dataset("toy", tmp_path, table, log=quiet)
    assert list(tmp_path.iterdir()) == []


def test_offline_names_url_and_destination(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz"
    table = {"toy": [RemoteFile(url, "0" * 32)]}
    with pytest.raises(GenforgeError) as exc:
        download_dataset("toy", tmp_path, table, timeout=5, log=quiet)
    message = str(exc.value)
    assert f"cannot download {url}" in message and "offline?" in message
    assert f"place it at {tmp_path / 'train-images-idx3-ubyte.gz'} (MD5 {'0' * 32})" in message


def test_http_error(server, tmp_path):
    table = {"toy": [RemoteFile(server.url + "/missing.gz", "0" * 32)]}
    with pytest.raises(GenforgeError, match="missing.gz answered HTTP 404"):
        download_dataset("toy", tmp_path, table, log=quiet)


def test_idx_download_then_load(server, tmp_path):
    source = tmp_path / "served"
    datafiles.write_idx_set(source)
    server.files = {f"/mnist/{p.name}": p.read_bytes() for p in source.iterdir()}
    from genforge.data.download import _idx

    md5s = tuple(md5(server.files[f"/mnist/{n}"]) for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    root = tmp_path / "cache"
    download_dataset("mnist", root, {"mnist": _idx(server.url + "/mnist/", md5s)}, log=quiet)
    assert len(load_dataset("mnist", str(root), "test")) == 6


def test_cifar_tarball_is_unpacked(server, tmp_path):
    made = tmp_path / "made"
    datafiles.write_cifar10(made, per_batch=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(made / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    server.files = {"/cifar-10-python.tar.gz": buffer.getvalue()}
    table = {"cifar10": [RemoteFile(server.url + "/cifar-10-python.tar.gz", md5(buffer.getvalue()),
                                    extract_to="cifar-10-batches-py")]}
    root = tmp_path / "cache"
    download_dataset("cifar10", root, table, log=quiet)
    assert len(load_dataset("cifar10", str(root))) == 10
    download_dataset("cifar10", root, table, log=quiet)
    assert len(server.requests) == 1


def test_embedded_and_manual_datasets(tmp_path):
    download_dataset("mnist-5k", tmp_path, log=quiet)  # nothing to do, no network
    with pytest.raises(GenforgeError, match="img_align_celeba.zip .*unpack it into"):
        download_dataset("celeba", tmp_path)
    with pytest.raises(GenforgeError, match="no download for 'imagenet'"):
        download_dataset("imagenet", tmp_path)


def test_published_table_is_complete():
    from genforge.data.download import DOWNLOADS

    assert set(DOWNLOADS) == {"mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100"}
    for files in DOWNLOADS.values():
        for remote in files:
            assert remote.url.startswith(("https://", "http://")) and len(remote.md5) == 32
            int(remote.md5, 16)


def test_train_download_flag_fetches_before_training(server, tmp_path, monkeypatch, capsys):
    from genforge.cli import main
    from genforge.data import download

    source = tmp_path / "served"
    datafiles.write_idx_set(source, n_train=16)
    server.files = {f"/m/{p.name}": p.read_bytes() for p in source.iterdir()}
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setitem(download.DOWNLOADS, "mnist",
                        download._idx(server.url + "/m/", tuple(md5(server.files[f"/m/{n}"]) for n in names)))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cache"
    args = ["train", "--data", "mnist", "--data-root", str(root), "--model", "gan-mlp", "--steps", "1",
            "--batch-size", "8", "--device", "cpu", "--out", "run", "--quiet"]
    assert main(args[:-1] + ["--dry-run"]) == 2  # without --download nothing is fetched: a clear error
    assert "data folder" in capsys.readouterr().err and not root.exists()
    assert main(args + ["--download"]) == 0
    assert (root / "train-images-idx3-ubyte.gz").is_file() and (tmp_path / "run" / "config.yaml").is_file()


def test_existing_files_are_never_overwritten(server, tmp_path):
    server.files = {"/a.bin.gz": PAYLOAD, "/b.bin.gz": PAYLOAD, "/c.bin": PAYLOAD}
    table = {"toy": [RemoteFile(server.url + p, md5(PAYLOAD)) for p in ("/a.bin.gz", "/b.bin.gz", "/c.bin")]}
    (tmp_path / "a.bin.gz").write_bytes(b"my own copy")  # a different file under the same name
    (tmp_path / "b.bin").write_bytes(b"uncompressed copy")  # the uncompressed variant
    lines = []
    download_dataset("toy", tmp_path, table, log=lines.append)
    assert (tmp_path / "a.bin.gz").read_bytes() == b"my own copy" and not (tmp_path / "b.bin.gz").exists()
    assert (tmp_path / "c.bin").read_bytes() == PAYLOAD and [p for p, _ in server.requests] == ["/c.bin"]
    assert any("kept" in line and "a.bin.gz" in line and "MD5 differs" in line for line in lines)
