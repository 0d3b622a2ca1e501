"""``genforge serve``: a web page and a JSON API that draw from trained runs (see app.py).

An entry point like cli.py: it parses, loads and calls the library; no library module imports it.
Needs the `web` extra (FastAPI, uvicorn): pip install 'genforge[web]'.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ..errors import GenforgeError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_runs(run_dirs: list[str], device: str = "cpu") -> dict:
    """Each run (or safetensors export) loaded once, named by its folder (made unique)."""
    from ..run import load_run

    runs = {}
    for run_dir in run_dirs:
        run = load_run(run_dir, device=device)
        name, k = Path(run_dir).resolve().name, 2
        while name in runs:
            name, k = f"{Path(run_dir).resolve().name}-{k}", k + 1
        runs[name] = run
    return runs


def serve(run_dirs: list[str], host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
          max_images: int = 16, queue: int = 8) -> None:
    """Load the runs, then serve the page and the API until interrupted (torch's threads: `genforge
    serve --threads`, set by the CLI like every computing command's)."""
    try:
        import uvicorn

        from .app import Limits, create_app
    except ImportError:
        raise GenforgeError("genforge serve needs the web extra; install it with: pip install 'genforge[web]'") from None
    if not 1 <= max_images <= 256:
        raise GenforgeError(f"--max-images must be in 1..256, got {max_images}")
    if not 0 <= queue <= 1024:
        raise GenforgeError(f"--queue must be in 0..1024, got {queue}")
    if not 0 < port < 65536:
        raise GenforgeError(f"--port must be in 1..65535, got {port}")
    app = create_app(load_runs(run_dirs, device), Limits(max_images=max_images, queue=queue))
    if not is_loopback(host):
        print(f"genforge: warning: serving on {host}, reachable from other machines; the demo has no "
              "authentication. Use --host 127.0.0.1 to keep it on this machine.", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {', '.join(app.state.names)} on http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
