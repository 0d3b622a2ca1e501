"""One rank of a test job: `python -m torch.distributed.run --standalone --nproc_per_node N
tests/distributed_worker.py SPEC.json` (tests/test_distributed.py writes SPEC.json).

SPEC holds the run's overrides (a tiny config), the run directory and what to record beside it:
  params_dir   each rank saves its final parameters there as rank-R.pt (to compare the ranks)
  audit_dir    each rank lists every file it opened for writing under the run directory in rank-R.json
  pid_dir      each rank writes its process id there as rank-R.pid (to signal one rank)
  fail_rank / fail_step   that rank raises a GenforgeError in that step
The model 'toy-regressor' is a deterministic family without batch norm, registered here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from genforge.errors import GenforgeError  # noqa: E402
from genforge.families import registry  # noqa: E402
from genforge.families.contract import Family, ModelSpec  # noqa: E402


class Regressor(nn.Module):
    """Predicts each image's mean brightness from its pixels: a small MLP, no noise, no batch norm."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 16), nn.Tanh(), nn.Linear(16, 1))


FAIL = {}


def regressor_step(nets, opts, batch, cfg, precision, state):
    if FAIL and batch.step == FAIL["step"] and int(os.environ.get("RANK", "0")) == FAIL["rank"]:
        raise GenforgeError(f"rank {FAIL['rank']} failed on purpose at step {batch.step}; this is the test's error")
    x = batch.images.float() / 255
    with precision.context():
        prediction = nets["regressor"].net(x).squeeze(1)
    loss = (prediction.float() - x.mean((1, 2, 3))).pow(2).mean()
    opts["regressor"].zero_grad(set_to_none=True)
    precision.backward_step("regressor", loss, opts["regressor"])
    return {"loss": loss.detach()}


def regressor_sample(nets, request, cfg):
    return torch.zeros(request.n, cfg.model.channels, cfg.model.image_size, cfg.model.image_size)


REGRESSOR = Family(name="toy-regressor", step=regressor_step, sample=regressor_sample, inference=("regressor",))
REGRESSOR_MODELS = {"toy-regressor": ModelSpec(REGRESSOR, lambda cfg: {"regressor": Regressor(cfg.model.channels,
                                                                                              cfg.model.image_size)})}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(1)
    registry.register_family(REGRESSOR, REGRESSOR_MODELS)
    run_dir = Path(spec["run_dir"]).resolve()
    if spec.get("fail_rank") is not None:
        FAIL.update(rank=spec["fail_rank"], step=spec["fail_step"])
    if spec.get("pid_dir"):
        (Path(spec["pid_dir"]) / f"rank-{rank}.pid").write_text(str(os.getpid()))
    written: set[str] = set()
    if spec.get("audit_dir"):
        def audit(event, args):
            if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
                path, mode, flags = args[0], args[1], args[2]
                writing = (mode and any(c in str(mode) for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                if writing and str(run_dir) in os.path.abspath(os.fsdecode(path)):
                    written.add(os.path.relpath(os.path.abspath(os.fsdecode(path)), run_dir))
            elif event in ("os.rename", "os.replace") and str(run_dir) in os.path.abspath(os.fsdecode(args[1])):
                written.add(os.path.relpath(os.path.abspath(os.fsdecode(args[1])), run_dir))
        sys.addaudithook(audit)

    from genforge.cli import main as cli_main
    from genforge.training import loop

    trainings = []
    setup = loop.setup
    loop.setup = lambda *a, **k: trainings.append(setup(*a, **k)) or trainings[-1]  # to read the final networks
    status = cli_main(spec["args"])
    if spec.get("audit_dir"):
        (Path(spec["audit_dir"]) / f"rank-{rank}.json").write_text(json.dumps(sorted(written)))
    if spec.get("params_dir") and trainings:
        state = {f"{n}.{k}": v for n, net in trainings[-1].nets.items() for k, v in net.state_dict().items()}
        torch.save(state, Path(spec["params_dir"]) / f"rank-{rank}.pt")
    return status


if __name__ == "__main__":
    sys.exit(main())
