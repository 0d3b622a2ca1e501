"""Faults and hostile input (issue 19): each case reproduces a way to lose work, hang, exhaust memory
or get a traceback, and checks the one-line error (exit status 2, nothing on disk lost) or the
documented behaviour instead. Inputs are small files the tests write; memory-heavy cases are refused
by checks that run before anything is allocated; hangs are bounded by a timeout (SIGALRM or a
subprocess timeout)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.cli import main
from genforge.errors import GenforgeError
from genforge.training import checkpoint as ckpt
from tests.conftest import ROOT

# A run that trains in about a second: 64 random 8x8 images, a tiny VAE.
TINY = ["--model", "vae-mlp", "--batch-size", "8", "--device", "cpu", "--set", "model.width=16",
        "--set", "model.latent_dim=2", "--set", "train.log_every=1", "--set", "train.sample_every=1000",
        "--set", "train.checkpoint_every=2", "--quiet"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def write_npz(path: Path, seed: int = 0, n: int = 64) -> str:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
    return f"npz:{path}"


@pytest.fixture
def genforge(capsys, tmp_path, monkeypatch):
    """genforge.cli.main(ARGS) in this process, from tmp_path; returns (status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args):
        capsys.readouterr()
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def one_line_error(result, *fragments) -> str:
    status, _, err = result
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("genforge: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny_run(genforge, tmp_path):
    """A trained tiny run directory (4 steps, checkpoints at 2 and 4) and its data."""
    data = write_npz(tmp_path / "d.npz")
    genforge("train", *TINY, "--data", data, "--steps", "4", "--out", "run")
    assert ckpt.list_checkpoints(tmp_path / "run"), "the tiny run did not train"
    return tmp_path / "run", data


MEMORY_LIMIT = 3 * 2**30  # address space of a limited subprocess: torch loads in it, a memory bomb does not


def run_limited(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python ARGS` with at most MEMORY_LIMIT of address space (RLIMIT_AS) and a timeout, so a
    case that once exhausted memory or hung fails this test instead of the machine."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          preexec_fn=limit, timeout=timeout)


def limited_error(proc: subprocess.CompletedProcess, *fragments) -> None:
    one_line_error((proc.returncode, proc.stdout, proc.stderr), *fragments)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) when the block takes longer than `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- 1. non-finite weights are never saved, nor sampled ------------------------------------------------

def test_nonfinite_weights_are_not_checkpointed(tmp_path):
    from genforge.families.registry import resolve_config
    from genforge.training.loop import save_checkpoint, setup

    cfg = resolve_config(overrides=[{"model": {"name": "vae-mlp", "width": 16, "latent_dim": 2},
                                     "data": {"name": write_npz(tmp_path / "d.npz")},
                                     "train": {"steps": 2, "batch_size": 8, "device": "cpu"}}])
    tr = setup(cfg, tmp_path / "run")
    tr.step = 1
    save_checkpoint(tr)  # finite weights: saved
    with torch.no_grad():
        next(iter(tr.nets.values())).parameters().__next__()[0, 0] = float("nan")
    tr.step = 2
    with pytest.raises(GenforgeError, match="NaN or infinite.*last good checkpoint \\(step 1\\)"):
        save_checkpoint(tr)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")] == [1]


def test_sample_refuses_nonfinite_checkpoint(genforge, tiny_run, tmp_path):
    run_dir, _ = tiny_run
    step, path = ckpt.list_checkpoints(run_dir)[-1]
    payload = ckpt.load_checkpoint(path)
    for state in payload["networks"].values():
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    ckpt.save_checkpoint(path, payload)
    one_line_error(genforge("sample", "--run", run_dir, "--n", "4", "--out", "s.png"), "NaN or infinite weights")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("flag", [["--lr", "inf"], ["--lr", "nan"], ["--set", "train.momentum=nan"],
                                  ["--set", "train.betas=[0.5, .inf]"]])
def test_nonfinite_settings_are_refused(genforge, tmp_path, flag):
    one_line_error(genforge("train", *TINY, "--data", write_npz(tmp_path / "d.npz"), "--steps", "2", "--out", "run", *flag),
                   "finite")
    assert not (tmp_path / "run").exists()


# --- 2. memory exhaustion from small inputs ----------------------------------------------------------

def test_npz_label_values_are_capped(tmp_path):
    """Labels up to 2**40 without class_names once built a list of 2**40 names (23 GB resident)."""
    np.savez(tmp_path / "l.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 2**40]))
    limited_error(run_limited(["-m", "genforge", "data", "info", "npz:l.npz", "--no-preview"], tmp_path),
                  "label 1099511627776")


def test_npz_declared_shape_is_checked_before_reading(tmp_path):
    """An npz whose x declares a terabyte (the header is all that is written) is refused before np.load
    allocates it."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**6, 1024, 1024)}
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive, archive.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    limited_error(run_limited(["-m", "genforge", "data", "info", "npz:bomb.npz", "--no-preview"], tmp_path),
                  "GiB in memory", "available")


def test_oversized_sparse_and_device_files_are_not_read(tmp_path):
    """A 4 GiB sparse file and a link to /dev/zero named .png are bad files, never read."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (8, 8), 9).save(folder / "good.png")
    with open(folder / "sparse.png", "wb") as f:  # takes no disk
        f.truncate(4 * 2**30)
    os.symlink("/dev/zero", folder / "zero.png")
    proc = run_limited(["-m", "genforge", "data", "info", "folder:imgs", "--skip-bad", "--no-preview"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "images:   1 (2 bad files skipped)" in proc.stdout
    assert "more than the 256 MiB" in proc.stderr and "not a regular file" in proc.stderr


def test_zip_member_size_is_checked_before_reading(tmp_path, monkeypatch):
    from genforge.data import images

    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", 10_000, raising=False)  # raising=False: fails, not errors, on old code
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.png", b"\0" * 50_000)  # a few hundred bytes compressed
    with pytest.raises(images.BadImage, match="uncompressed, more than"):
        images.read_member("zip", str(tmp_path / "z.zip"), "big.png")


def test_decompression_bomb_is_one_line_everywhere(tmp_path):
    """PIL only warns between its pixel limit and twice it; genforge refuses from the limit on."""
    from genforge.data.images import BadImage, decode_image
    from genforge.data.options import LoadOptions
    from genforge.imageio import open_image

    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")  # a few hundred kB, 100M+ pixels
    with pytest.raises(GenforgeError, match="bomb"):
        open_image(tmp_path / "bomb.png")  # translate, encode, paired data
    with pytest.raises(BadImage, match="bomb"):
        decode_image((tmp_path / "bomb.png").read_bytes(), LoadOptions())  # folders and zips


# --- 3. hostile folders: link loops and FIFOs -------------------------------------------------------

def test_symlink_loops_are_walked_once(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        Image.new("L", (8, 8), i).save(folder / ("sub" if i % 2 else ".") / f"{i}.png")
    os.symlink(".", folder / "loop")
    os.symlink("..", folder / "sub" / "back")
    os.symlink("../sub", folder / "sub" / "again")
    proc = run_limited(["-c", "import sys; from pathlib import Path; from genforge.data.images import list_folder; "
                        "print(len(list_folder(Path(sys.argv[1]))))", str(folder)], tmp_path, timeout=60)
    assert proc.stdout.strip() == "5", proc.stderr[-500:]


def test_fifo_named_png_is_skipped_not_read(genforge, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), i * 40).save(folder / f"{i}.png")
    os.mkfifo(folder / "x.png")
    with time_limit(60):
        status, out, err = genforge("data", "info", f"folder:{folder}", "--skip-bad", "--no-preview")
    assert status == 0, err
    assert "images:   4 (1 bad files skipped)" in out
    assert "not a regular file" in err
    with time_limit(60):
        one_line_error(genforge("data", "info", f"folder:{folder}", "--no-preview"), "x.png", "not a regular file")


# --- 4. checkpoints that do not belong to the run ----------------------------------------------------

def test_foreign_checkpoint_is_refused_and_nothing_deleted(genforge, tiny_run, tmp_path):
    run_dir, data = tiny_run
    assert genforge("train", *TINY, "--data", data, "--steps", "2", "--out", "other", "--lr", "0.01")[0] == 0
    foreign = run_dir / "checkpoints" / "step-0000009.pt"
    foreign.write_bytes((tmp_path / "other" / "checkpoints" / "step-0000002.pt").read_bytes())
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    metrics = (run_dir / "metrics.jsonl").read_text()
    one_line_error(genforge("train", *TINY, "--data", data, "--steps", "12", "--out", run_dir),
                   "step-0000009.pt belongs to another run", "train.lr")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
    assert (run_dir / "metrics.jsonl").read_text() == metrics


def test_renamed_checkpoint_and_missing_rng_are_refused(genforge, tiny_run):
    run_dir, data = tiny_run
    step, path = ckpt.list_checkpoints(run_dir)[-1]
    renamed = path.with_name("step-0000020.pt")
    renamed.write_bytes(path.read_bytes())
    one_line_error(genforge("train", *TINY, "--data", data, "--steps", "30", "--out", run_dir),
                   "holds step 4, not the step of its name")
    payload = ckpt.load_checkpoint(path)
    del payload["rng"]
    ckpt.save_checkpoint(renamed, {**payload, "step": 20})
    one_line_error(genforge("train", *TINY, "--data", data, "--steps", "30", "--out", run_dir), "lacks rng")
    assert path.is_file()


def test_pruning_never_deletes_a_newer_checkpoint(tmp_path):
    from genforge.families.registry import resolve_config
    from genforge.training.loop import save_checkpoint, setup

    cfg = resolve_config(overrides=[{"model": {"name": "vae-mlp", "width": 16, "latent_dim": 2},
                                     "data": {"name": write_npz(tmp_path / "d.npz")},
                                     "train": {"steps": 9, "batch_size": 8, "device": "cpu", "keep_checkpoints": 1}}])
    tr = setup(cfg, tmp_path / "run")
    (tmp_path / "run" / "checkpoints").mkdir()
    newer = tmp_path / "run" / "checkpoints" / "step-0000009.pt"
    newer.write_bytes(b"not ours to delete")
    for tr.step in (1, 2):
        save_checkpoint(tr)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")] == [2, 9]


# --- 5. one writer per run directory -------------------------------------------------------------------

def test_second_train_on_a_locked_run_is_refused(genforge, tmp_path):
    data = write_npz(tmp_path / "d.npz")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from genforge.rundir import lock_run_dir; "
         "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(tmp_path / "run")],
        env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        one_line_error(genforge("train", *TINY, "--data", data, "--steps", "2", "--out", "run"),
                       "in use by another genforge train", f"PID {holder.pid}")
        assert list((tmp_path / "run").iterdir()) == []  # the refused command wrote nothing
    finally:
        holder.kill()
        holder.wait()
    assert genforge("train", *TINY, "--data", data, "--steps", "2", "--out", "run")[0] == 0  # free again


def test_temporary_names_are_unique(tmp_path):
    from genforge.imageio import atomic_path

    with atomic_path(tmp_path / "a.txt") as first, atomic_path(tmp_path / "a.txt") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.txt").read_text() == "1"  # the outer one renamed last
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# --- 6. decoder workers die with their parent --------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_decoder_workers_die_with_a_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", "import time; from genforge.data.images import decoder_pool\n"
         "pool = decoder_pool(2)\n"
         "futures = [pool.submit(time.sleep, 120) for _ in range(2)]\n"
         "time.sleep(2)\n"
         "print(' '.join(str(p) for p in pool._processes), flush=True)\n"
         "time.sleep(120)"], env=env(), stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "decoder workers outlived their parent"


# --- 7. a closed pipe or a closed terminal ---------------------------------------------------------

@pytest.mark.parametrize("how,code", [("pipe", 141), ("hangup", 129)])
def test_closed_stdout_or_terminal_checkpoints_then_stops(tmp_path, how, code):
    data = write_npz(tmp_path / "d.npz")
    args = [a for a in TINY if a != "--quiet"]
    cmd = [sys.executable, "-m", "genforge", "train", *args, "--data", data, "--steps", "100000", "--out", "run",
           "--set", "train.checkpoint_every=100000"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"step 1/")
    if how == "pipe":
        proc.stdout.close()  # what `| head -n 1` does
    else:
        proc.send_signal(signal.SIGHUP)
    try:
        proc.wait(timeout=120)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    found = ckpt.list_checkpoints(tmp_path / "run")
    assert found and found[-1][0] >= 1  # the steps done were saved


# --- 8. operating-system errors ---------------------------------------------------------------------

def test_os_errors_are_one_line(genforge, tiny_run, tmp_path):
    run_dir, data = tiny_run
    (tmp_path / "adir").mkdir()
    one_line_error(genforge("sample", "--run", run_dir, "--n", "4", "--out", "adir"), "adir is a folder")
    (tmp_path / "x.safetensors").mkdir()
    one_line_error(genforge("export", "--run", run_dir, "--out", "x.safetensors"), "x.safetensors")
    (tmp_path / "afile").write_text("keep me")
    one_line_error(genforge("train", *TINY, "--data", data, "--steps", "2", "--out", "afile"), "is a file")
    assert (tmp_path / "afile").read_text() == "keep me"
    assert not list(tmp_path.glob("**/*.tmp")), "a temporary file was left behind"


def test_full_disk_is_one_line_and_leaves_no_temporary(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: writes fail with an OSError."""
    import resource

    data = write_npz(tmp_path / "d.npz")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([sys.executable, "-m", "genforge", "train", *TINY, "--data", data, "--steps", "2",
                           "--out", "run"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("genforge: error: "), proc.stderr
    assert "File too large" in lines[0]
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]


# --- 9. silent garbage -----------------------------------------------------------------------------

def test_16_bit_images_are_refused_everywhere(tmp_path):
    from genforge.imageio import open_image

    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    with pytest.raises(GenforgeError, match="16-bit"):
        open_image(tmp_path / "deep.png")  # encode, translate, paired data read through it


def test_sample_does_not_overwrite_a_foreign_file(genforge, tiny_run, tmp_path):
    run_dir, _ = tiny_run
    (tmp_path / "notes.txt").write_text("my notes")
    one_line_error(genforge("sample", "--run", run_dir, "--n", "4", "--out", "notes.txt"), "--force")
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert genforge("sample", "--run", run_dir, "--n", "4", "--out", "grid.png")[0] == 0
    assert genforge("sample", "--run", run_dir, "--n", "4", "--out", "grid.png")[0] == 0  # its own image: replaced
    assert genforge("sample", "--run", run_dir, "--n", "4", "--out", "notes.txt", "--force")[0] == 0


def test_translate_names_never_collide():
    from genforge.translate import _unique

    names = _unique(["a", "a", "a-2", "b", "a"])
    assert len(set(names)) == len(names) == 5
    assert names[2] == "a-2"  # an input keeps its own name


@pytest.mark.parametrize("text,fragments", [
    ("model: vae-mlp\n", ("section 'model' must be a mapping", "model: {name: vae-mlp}")),
    ("train: 500\n", ("section 'train' must be a mapping", "got int 500")),
    ("model: [1, 2]\n", ("section 'model' must be a mapping",)),
    ("train:\n  steps: true\n", ("train.steps must be an integer, got True",)),
    ("train:\n  lr: [1]\n", ("train.lr must be a finite number",)),
    ("model:\n  name: [vae-mlp]\n", ("model.name must be a string",)),
])
def test_config_values_are_type_checked(genforge, tmp_path, text, fragments):
    (tmp_path / "c.yaml").write_text(text)
    one_line_error(genforge("train", "--config", "c.yaml", "--out", "run", "--dry-run"), *fragments)
    assert not (tmp_path / "run").exists()


def test_toml_scalar_section_is_refused(genforge, tmp_path):
    (tmp_path / "c.toml").write_text("train = 5\n")
    one_line_error(genforge("train", "--config", "c.toml", "--out", "run", "--dry-run"),
                   "section 'train' must be a mapping")


def test_changed_data_is_reported_on_resume(genforge, tiny_run, tmp_path):
    run_dir, data = tiny_run
    write_npz(tmp_path / "d.npz", seed=1)  # same count and shape, other pixels
    status, _, err = genforge("train", *TINY, "--data", data, "--steps", "6", "--out", run_dir)
    assert status == 0, err
    assert "genforge: warning: the data of" in err and "changed since its checkpoint" in err
    status, _, err = genforge("train", *TINY, "--data", data, "--steps", "8", "--out", run_dir)
    assert status == 0 and "changed" not in err  # the new checkpoints record the new data


# --- 10. common bad arguments --------------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["--seed", "-1"], "train.seed must be in [0, 2**32)"),
    (["--seed", str(2**70)], "train.seed must be in [0, 2**32)"),
    (["--set", "train.lr=[1"], "not valid YAML"),
])
def test_bad_train_arguments_write_nothing(genforge, tmp_path, args, fragment):
    one_line_error(genforge("train", *TINY, "--data", write_npz(tmp_path / "d.npz"), "--steps", "2", "--out", "run",
                            *args), fragment)
    assert not (tmp_path / "run").exists()  # so the corrected command is not refused


def test_bad_sample_and_eval_arguments(genforge, tiny_run, tmp_path):
    run_dir, _ = tiny_run
    one_line_error(genforge("sample", "--run", run_dir, "--seed", "-3", "--out", "s.png"), "seed -3 is out of range")
    one_line_error(genforge("interpolate", "--run", run_dir, "--seeds", "1,99999999999999999999", "--out", "i.png"),
                   "out of range")
    assert not list(tmp_path.glob("*.png"))
    # Huge counts once allocated them (25 GB for 10**8 8x8 samples): in a memory-limited subprocess.
    limited_error(run_limited(["-m", "genforge", "sample", "--run", str(run_dir), "--n", "100000000", "--out", "s.png"],
                              tmp_path), "several calls")
    limited_error(run_limited(["-m", "genforge", "eval", "--run", str(run_dir), "--n", "1000000000"], tmp_path),
                  "--n must be between 2 and")


def test_malformed_cifar_batches(genforge, tmp_path):
    import pickle

    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]:
        (folder / name).write_bytes(pickle.dumps(good))
    for labels in (5, ["a", "b"], [[0], [1]], [2**80, 0]):
        (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
        one_line_error(genforge("data", "info", "cifar10", "--root", tmp_path / "cifar", "--no-preview"),
                       "data_batch_3", "integer labels")


def test_npz_with_empty_x(genforge, tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 8, 8), np.uint8))
    one_line_error(genforge("data", "info", f"npz:{tmp_path / 'e.npz'}", "--no-preview"), "is empty")


# --- randomised kill and resume ----------------------------------------------------------------------

@pytest.mark.slow
def test_random_kills_then_rerun_is_bit_identical(tmp_path):
    """SIGKILL a run at random moments (checkpoints are written every step, so many kills land in a
    checkpoint write), rerun the same command each time: the end state equals an uninterrupted run's."""
    data = write_npz(tmp_path / "d.npz")
    steps = 300

    def command(out):
        return [sys.executable, "-m", "genforge", "train", *TINY, "--data", data, "--steps", str(steps), "--out", out,
                "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=2"]

    subprocess.run(command("full"), cwd=tmp_path, env=env(), check=True, timeout=600)
    rng = random.Random(19)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(command("killed"), cwd=tmp_path, env=env())
        # Wait until it trains (a checkpoint newer than before), then kill at a random moment.
        start = (ckpt.list_checkpoints(tmp_path / "killed") or [(0, None)])[-1][0]
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            found = ckpt.list_checkpoints(tmp_path / "killed")
            if found and found[-1][0] > start:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3, "the run finished before it was killed three times; raise steps"
    subprocess.run(command("killed"), cwd=tmp_path, env=env(), check=True, timeout=600)
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "full")[-1][1])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "killed")[-1][1])
    assert a["step"] == b["step"] == steps
    for part in ("networks", "optimizers"):
        for name in a[part]:
            flat_a, flat_b = _flatten(a[part][name]), _flatten(b[part][name])
            assert flat_a.keys() == flat_b.keys()
            for key, value in flat_a.items():
                assert torch.equal(value, flat_b[key]) if isinstance(value, torch.Tensor) else value == flat_b[key], key
    def losses(run):  # every record but the speed, which differs between runs
        return [line.split(', "images_per_s"')[0] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert losses("killed") == losses("full")


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (list, tuple)):
        out = {}
        for i, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix: tree}
