"""Benchmark (not library code): a bounded load test of `genforge serve` on loopback.

Starts `genforge serve --run RUN --host 127.0.0.1 --threads 1` on a free port, then sends
--requests POST /api/sample requests (n images each, a different seed each) from --clients
concurrent clients, each request with a --timeout. Every answer must be 200 or 503 (a full queue);
anything else, or a server that dies, fails the run (exit 1). Only 127.0.0.1 is ever contacted.

Baseline, in the same run: the same draws in process (load_run(RUN).sample(n, seed), one thread),
so the HTTP latency reads as a multiple of the model's own time. Memory: the server's resident set
(VmRSS) after start, after the first quarter of the requests, and at the end.

    PYTHONPATH=src python benchmarks/bench_serve.py --run runs/demo-dcgan --requests 200 --clients 16 --n 8
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url: str, body: dict, timeout: float) -> tuple[int, float]:
    """(HTTP status, seconds); status 0 for a connection failure or a timeout."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    except OSError:
        status = 0
    return status, time.perf_counter() - start


def hammer(base: str, requests: int, clients: int, n: int, timeout: float, label: int | None = None,
           on_progress=None) -> list[tuple[int, float]]:
    """`requests` sample requests from `clients` threads against base (loopback only); (status, seconds) each."""
    assert base.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")), "loopback only"

    def one(i: int):
        body = {"seed": i, "n": n, **({"label": label} if label is not None else {})}
        result = post(base + "/api/sample", body, timeout)
        if on_progress:
            on_progress(i)
        return result

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(requests)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, queue: int, max_images: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--run", run, "--host", "127.0.0.1",
                             "--port", str(port), "--threads", "1", "--queue", str(queue),
                             "--max-images", str(max_images)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"genforge serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("genforge serve did not start within 120 s")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo-dcgan", help="run directory (or safetensors export) to serve")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--n", type=int, default=8, help="images per request")
    parser.add_argument("--queue", type=int, default=8, help="the server's --queue")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request")
    parser.add_argument("--baseline-calls", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.requests <= 5000 or not 1 <= args.clients <= 64:
        raise SystemExit("--requests must be in 1..5000 and --clients in 1..64 (a bounded test)")

    import torch

    from genforge import load_run

    torch.set_num_threads(1)
    run = load_run(args.run)
    label = 0 if run.config.model.num_classes else None
    labels = torch.tensor([label]) if label is not None else None
    run.sample(args.n, seed=0, labels=labels)
    times = []
    for i in range(args.baseline_calls):
        start = time.perf_counter()
        run.sample(args.n, seed=i, labels=labels)
        times.append(time.perf_counter() - start)
    baseline = statistics.median(times)

    proc, base = start_server(args.run, args.queue, max(args.n, 16))
    try:
        rss = {"after start": rss_mib(proc.pid)}
        quarter = max(1, args.requests // 4)

        def progress(i):
            if i == quarter:
                rss["after 1/4"] = rss_mib(proc.pid)

        start = time.perf_counter()
        results = hammer(base, args.requests, args.clients, args.n, args.timeout, label, progress)
        wall = time.perf_counter() - start
        rss["at the end"] = rss_mib(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    counts = {code: sum(1 for s, _ in results if s == code) for code in sorted({s for s, _ in results})}
    ok = [t for s, t in results if s == 200]
    busy = [t for s, t in results if s == 503]
    print(f"# genforge serve load test: {args.run}, {args.requests} requests of n={args.n} from {args.clients} "
          f"clients, queue {args.queue}, 1 torch thread; load {os.getloadavg()[0]:.2f}")
    print(f"{'':<34}{'value':>12}")
    print(f"{'answers':<34}{', '.join(f'{c}: {k}' for c, k in counts.items()):>12}")
    print(f"{'wall time (s)':<34}{wall:>12.2f}")
    print(f"{'served images/s':<34}{len(ok) * args.n / wall:>12.1f}")
    print(f"{'200 latency p50 / p95 (ms)':<34}{percentile(ok, .5) * 1e3:>6.0f} / {percentile(ok, .95) * 1e3:.0f}")
    if busy:
        print(f"{'503 latency p50 (ms)':<34}{percentile(busy, .5) * 1e3:>12.1f}")
    print(f"{'baseline: in-process sample (ms)':<34}{baseline * 1e3:>12.1f}")
    print(f"{'p50 latency / baseline':<34}{percentile(ok, .5) / baseline:>12.1f}")
    print(f"{'served images/s / baseline images/s':<34}{(len(ok) * args.n / wall) / (args.n / baseline):>12.2f}")
    print("server RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    bad = [s for s, _ in results if s not in (200, 503)]
    if bad or not alive:
        print(f"FAILED: {len(bad)} answers other than 200/503; server alive: {alive}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
