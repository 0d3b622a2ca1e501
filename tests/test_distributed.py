"""Data-parallel training with torchrun on CPU (gloo, 2 processes): the ranks agree, the global batch
does not depend on how many processes share it, rank 0 alone writes, checkpoints resume at another
world size, and a failing or stopped rank ends the whole job (every launch bounded by a timeout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genforge.rundir import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
TINY = ["--device", "cpu", "--quiet", "--set", "train.log_every=3", "--set", "train.checkpoint_every=3",
        "--set", "train.sample_every=3", "--set", "train.keep_checkpoints=10"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
            "GENFORGE_DIST_TIMEOUT": "60"}


def _spec(tmp_path: Path, name: str, args: list[str], **extra) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"args": [str(a) for a in args], "run_dir": str(args[args.index("--out") + 1]), **extra}))
    return path


def launch(tmp_path: Path, name: str, args: list[str], nproc: int = 2, timeout: float = 120, **extra):
    """Run the worker as `nproc` torchrun processes (nproc=0: one plain process, no torchrun)."""
    spec = _spec(tmp_path, name, args, **extra)
    prefix = [sys.executable] if nproc == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", str(nproc)]
    return subprocess.run([*prefix, str(WORKER), str(spec)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=_env())


def _params(folder: Path, rank: int) -> dict:
    return torch.load(folder / f"rank-{rank}.pt", weights_only=True)


def test_two_ranks_agree_bitwise_only_rank0_writes_and_the_checkpoint_resumes_in_one_process(tmp_path, cli):
    # gan-mlp: several discriminator passes before the generator's backward, and batch norm (buffers).
    params, audit = tmp_path / "params", tmp_path / "audit"
    params.mkdir(), audit.mkdir()
    run = tmp_path / "run"
    args = ["train", "--model", "gan-mlp", "--data", "mnist-5k", "--out", run, "--steps", "6", "--batch-size", "16",
            "--set", "model.width=32", "--set", "model.latent_dim=8", "--set", "gan.d_steps=2", *TINY]
    proc = launch(tmp_path, "two", args, params_dir=str(params), audit_dir=str(audit))
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0, rank1 = _params(params, 0), _params(params, 1)
    assert rank0.keys() == rank1.keys() and any("running_mean" in k for k in rank0)
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), f"{k} differs between the ranks"

    written0, written1 = (json.loads((audit / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert written1 == [], f"rank 1 wrote {written1}"
    assert any(p.startswith("checkpoints") for p in written0) and "metrics.jsonl" in written0
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    saved = load_checkpoint(list_checkpoints(run)[-1][1])
    assert saved["world_size"] == 2 and saved["config"]["train"]["batch_size"] == 16
    for k, v in rank0.items():  # what rank 0 saved is what every rank trained
        net, key = k.split(".", 1)
        assert torch.equal(saved["networks"][net][key], v)

    # The same command in one process (the same global batch of 16) resumes the 2-process run.
    one = cli(*[a for a in args[:args.index("--steps")]], "--steps", "9", *args[args.index("--steps") + 2:], timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    assert [s for s, _ in list_checkpoints(run)] == [3, 6, 9]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 9]
    resumed = load_checkpoint(list_checkpoints(run)[-1][1])
    assert resumed["world_size"] == 1
    assert any(not torch.equal(resumed["networks"][n][k], saved["networks"][n][k])
               for n in saved["networks"] for k in saved["networks"][n])


def test_two_ranks_match_one_process_with_the_same_global_batch_and_accumulation(tmp_path):
    # A deterministic model without batch norm: the mean of the two ranks' gradients is the gradient
    # of the global batch, so 2 x 8 images per step match 1 x 16 and 2 micro-batches of 8 up to rounding.
    from genforge.families import registry
    from genforge.training import train
    from tests.conftest import tiny_config
    from tests.distributed_worker import REGRESSOR, REGRESSOR_MODELS

    args = ["train", "--model", "toy-regressor", "--data", "mnist-5k", "--out", tmp_path / "two", "--steps", "8",
            "--batch-size", "16", "--lr", "0.01", *TINY]
    proc = launch(tmp_path, "two", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    registry.register_family(REGRESSOR, REGRESSOR_MODELS)
    threads = torch.get_num_threads()  # one thread, as the torchrun workers (OMP_NUM_THREADS=1): an earlier
    torch.set_num_threads(1)           # test in this worker may have left another count (other summation orders)
    try:
        for name, accumulate in (("one", 1), ("accumulated", 2)):  # in this process: no second start-up
            train(tiny_config("toy-regressor", steps=8, train={"lr": 0.01, "accumulate": accumulate,
                                                                "checkpoint_every": 3, "keep_checkpoints": 10}),
                  tmp_path / name, quiet=True)
    finally:
        registry.unregister_family(REGRESSOR.name)
        torch.set_num_threads(threads)
    first, final = ({name: load_checkpoint(list_checkpoints(tmp_path / name)[i][1])["networks"]["regressor"]
                     for name in ("two", "one", "accumulated")} for i in (0, -1))
    for k, v in final["one"].items():
        assert torch.allclose(final["two"][k], v, atol=2e-5, rtol=1e-4), k
        assert torch.allclose(final["accumulated"][k], v, atol=2e-5, rtol=1e-4), k
        assert torch.allclose(first["two"][k], first["one"][k], atol=2e-5, rtol=1e-4), k
    # ... and the runs did move: a test that cannot fail would pass on untrained weights too.
    assert max((final["one"][k] - first["one"][k]).abs().max().item() for k in final["one"]) > 1e-3


def test_the_global_batch_is_cut_into_equal_shares_or_refused():
    from genforge.data import ImageDataset
    from genforge.errors import GenforgeError
    from genforge.training.batches import BatchSampler

    data = ImageDataset(torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous())
    whole = BatchSampler(data, 8, seed=3, device=torch.device("cpu"))
    shares = BatchSampler(data, 8, seed=3, device=torch.device("cpu"), parts=4)
    for step in (0, 4, 7):  # 7: the second epoch
        assert torch.equal(torch.cat([shares(step, part).images for part in range(4)]), whole(step).images)
    with pytest.raises(GenforgeError, match="does not split into 3 equal shares"):
        BatchSampler(data, 8, seed=3, device=torch.device("cpu"), parts=3)


def test_a_rank_that_raises_ends_the_whole_job_with_its_error(tmp_path):
    args = ["train", "--model", "toy-regressor", "--data", "mnist-5k", "--out", tmp_path / "run", "--steps", "50",
            "--batch-size", "16", *TINY]
    started = time.monotonic()
    proc = launch(tmp_path, "fail", args, timeout=90, fail_rank=1, fail_step=4)
    assert proc.returncode != 0
    assert "genforge: error: rank 1 failed on purpose at step 4" in proc.stderr
    assert time.monotonic() - started < 80
    # Rank 0 wrote the checkpoint before the failure and nothing after it.
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [3]


@pytest.mark.slow
def test_a_bad_batch_split_is_refused_on_every_rank_before_anything_is_written(tmp_path):
    args = ["train", "--model", "toy-regressor", "--data", "mnist-5k", "--out", tmp_path / "run", "--steps", "5",
            "--batch-size", "15", *TINY]
    proc = launch(tmp_path, "split", args, timeout=90)
    assert proc.returncode != 0
    assert "genforge: error: batch size 15 does not split into 2 equal shares" in proc.stderr
    assert proc.stderr.count("genforge: error:") == 2  # each rank's one line; torchrun's own report follows
    assert f'File "{ROOT / "src"}' not in proc.stderr  # no traceback of genforge's
    assert not (tmp_path / "run").exists()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _start(tmp_path: Path, name: str, args: list[str], **extra) -> subprocess.Popen:
    spec = _spec(tmp_path, name, args, **extra)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(WORKER), str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=_env(), start_new_session=True)


@pytest.mark.slow
def test_sigterm_on_one_rank_checkpoints_once_and_stops_every_rank(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = tmp_path / "run"
    args = ["train", "--model", "toy-regressor", "--data", "mnist-5k", "--out", run, "--steps", "100000",
            "--batch-size", "16", "--device", "cpu", "--set", "train.log_every=3", "--set",
            "train.checkpoint_every=100000", "--set", "train.sample_every=100000"]
    job = _start(tmp_path, "term", args, pid_dir=str(pids))
    try:
        _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size > 0, 90,
                  "the first report")
        os.kill(int((pids / "rank-1.pid").read_text()), signal.SIGTERM)
        out, err = job.communicate(timeout=90)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    kept = list_checkpoints(run)
    assert len(kept) == 1, err[-2000:]  # one checkpoint, at the step every rank stopped
    assert "SIGTERM: checkpoint saved at step" in out


@pytest.mark.slow
def test_sigkill_of_the_job_and_a_rerun_resume_it(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "toy-regressor", "--data", "mnist-5k", "--out", run, "--steps", "100000",
            "--batch-size", "16", *TINY]
    pids = tmp_path / "pids"
    pids.mkdir()
    job = _start(tmp_path, "kill", args, pid_dir=str(pids))
    try:
        _wait_for(lambda: len(list_checkpoints(run)) >= 2, 90, "two checkpoints")
    finally:  # the whole job: torchrun and its workers (which torchrun starts in sessions of their own)
        os.killpg(job.pid, signal.SIGKILL)
        for pid in pids.glob("rank-*.pid"):
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        job.wait(30)
    _wait_for(lambda: not any(Path(f"/proc/{p.read_text()}").exists() for p in pids.glob("rank-*.pid")), 30,
              "the killed workers to go")
    killed_at = list_checkpoints(run)[-1][0]
    final = killed_at + 3
    again = [*args[:args.index("--steps")], "--steps", str(final), *args[args.index("--steps") + 2:]]
    proc = launch(tmp_path, "rerun", again)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list_checkpoints(run)[-1][0] == final
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == final  # records after the checkpoint were dropped


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "vae-conv", "diffusion-unet", "pix2pix", "stylegan2", "tdiffusion-unet",
                                   "tstylegan2"])
def test_every_family_trains_checkpoints_and_resumes_on_two_processes(tmp_path, model):
    from tests.families.pix2pix.pix2pix_helpers import write_inversion_pairs

    data = f"paired:{write_inversion_pairs(tmp_path / 'pairs')}" if model == "pix2pix" else "mnist-5k"
    if model in ("tdiffusion-unet", "tstylegan2"):  # a captioned folder: 16 grey squares of 4 brightnesses, a caption each
        from PIL import Image

        folder = tmp_path / "captioned"
        folder.mkdir()
        for i in range(16):
            Image.new("L", (16, 16), 60 * (i % 4)).save(folder / f"{i}.png")
            (folder / f"{i}.txt").write_text(f"a square of brightness {i % 4}\n")
        data = f"folder:{folder}"
    params = tmp_path / "params"
    params.mkdir()
    run = tmp_path / "run"
    base = ["train", "--model", model, "--data", data, "--out", run, "--batch-size", "8", "--set", "model.width=8", *TINY]
    if model == "pix2pix":
        base += ["--set", "pix2pix.n_layers=2"]
    first = launch(tmp_path, "first", [*base, "--steps", "3"], timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    second = launch(tmp_path, "second", [*base, "--steps", "6"], timeout=300, params_dir=str(params))
    assert second.returncode == 0, second.stderr[-3000:]
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    rank0, rank1 = _params(params, 0), _params(params, 1)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


@pytest.mark.slow
def test_a_resume_at_the_same_world_size_is_bit_exact(tmp_path):
    # Each rank's noise is a function of (seed, step, rank) and its batch share of (seed, step, rank):
    # stopping at step 3 and rerunning gives the networks an uninterrupted 2-process run ends with.
    def args(out, steps):
        return ["train", "--model", "gan-mlp", "--data", "mnist-5k", "--out", out, "--steps", steps,
                "--batch-size", "16", "--set", "model.width=32", "--set", "model.latent_dim=8", *TINY]

    for name, steps in (("straight-6", 6), ("resumed-3", 3), ("resumed-6", 6)):
        proc = launch(tmp_path, name, args(tmp_path / name.split("-")[0], steps))
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (load_checkpoint(list_checkpoints(tmp_path / n)[-1][1]) for n in ("straight", "resumed"))
    assert a["step"] == b["step"] == 6
    for part in ("networks", "ema"):
        for net in a[part]:
            flat_a, flat_b = (torch.nn.utils.parameters_to_vector(
                [v.float() for v in _tensors(x[part][net])]) for x in (a, b))
            assert torch.equal(flat_a, flat_b), f"{part}.{net}"


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree.reshape(-1)]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    return []



def test_memory_mapped_images_train_exactly_as_images_on_the_device(tmp_path):
    from genforge.training import train
    from tests.conftest import tiny_config

    for memory in ("device", "mmap"):
        train(tiny_config("gan-mlp", steps=4, data={"memory": memory}, train={"checkpoint_every": 4}),
              tmp_path / memory, quiet=True)
    cache = tmp_path / "mmap" / "data-cache" / "images.npy"
    assert cache.is_file() and not (tmp_path / "device" / "data-cache").exists()
    a, b = (load_checkpoint(list_checkpoints(tmp_path / m)[-1][1])["networks"] for m in ("device", "mmap"))
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
    assert a["generator"].keys() and a["discriminator"].keys()
