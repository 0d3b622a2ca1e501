"""Data-parallel training over torch.distributed, as launched by torchrun (NCCL on GPUs, gloo on CPUs).

Every rank runs the same loop on its share of the global batch. What makes the ranks agree:
  - parameters and buffers are broadcast from rank 0 at the start, and buffers (batch-norm running
    statistics) again after every step, so every rank holds rank 0's state;
  - gradients are averaged in one place, `average_gradients`, which the loop hands to
    `Precision.backward_step` (runtime.py) as its gradient hook: it runs after each backward pass
    and before the optimiser step, however many discriminator passes a step makes before it. No
    DistributedDataParallel wrapper: DDP's reducer fires once per forward/backward pair and
    reports unused parameters on the GAN steps' frozen discriminator passes;
  - rank 0 alone writes files; the others meet it at the next collective, which waits at most
    GENFORGE_DIST_TIMEOUT seconds (default 1800, long enough for an evaluation on rank 0) and
    then fails with an error that names what it waited for.

A single process (no torchrun, or WORLD_SIZE=1) gets `World()` and every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import GenforgeError

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank (0 = the one that writes), size, local rank on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def timeout_s() -> float:
    text = os.environ.get("GENFORGE_DIST_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = 0.0
    if value <= 0:
        raise GenforgeError(f"GENFORGE_DIST_TIMEOUT must be a positive number of seconds, got {text!r}; e.g. 1800")
    return value


def world_from_env() -> World:
    """The World torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (a single process without them)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise GenforgeError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun") from None
    if size < 1 or not 0 <= rank < size:
        raise GenforgeError(f"RANK {rank} is not in a WORLD_SIZE of {size}; launch with torchrun")
    return World(rank, size, local_rank)


def start(device_name: str) -> tuple[World, str]:
    """Join the job torchrun started (a no-op for one process). Returns the world and the device this
    rank trains on: cuda:LOCAL_RANK for 'auto'/'cuda' on a GPU node, else the asked device."""
    world = world_from_env()
    if not world.distributed:
        return world, device_name
    import torch.distributed as dist

    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise GenforgeError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; use --device cpu or auto")
        device_name = f"cuda:{world.local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(torch.device(device_name))
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        with failure(f"joining the job (rank {world.rank} of {world.size}, {backend})"):
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()))
    return world, device_name


def stop(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def failure(what: str):
    """Turn a failed or timed-out collective into one GenforgeError line that names what was awaited."""
    try:
        yield
    except GenforgeError:
        raise
    except (RuntimeError, ValueError, OSError) as exc:  # DistBackendError and friends derive from RuntimeError
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"rank {os.environ.get('RANK', '?')}: {what} failed ({text}); another rank stopped "
                            f"or took longer than GENFORGE_DIST_TIMEOUT={timeout_s():g} s: read its error above, "
                            "fix it and rerun the same command to resume") from None


def _flat_collective(tensors: list[torch.Tensor], op) -> None:
    """Apply `op` to `tensors` as one flat buffer per dtype (one collective each, not one per tensor)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        op(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def average_gradients(world: World, name: str, optimizer: torch.optim.Optimizer) -> None:
    """Average the gradients of `optimizer`'s parameters over the ranks (the gradient hook of
    Precision.backward_step). Parameters without a gradient on this rank count as zero, so the
    ranks always make the same collective call."""
    if not world.distributed:
        return
    import torch.distributed as dist

    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]

    def op(flat):
        dist.all_reduce(flat)
        flat.div_(world.size)

    with failure(f"averaging the gradients of {name}"):
        _flat_collective(grads, op)


def broadcast_state(world: World, modules: list[nn.Module], buffers_only: bool = False) -> None:
    """Make every rank hold rank 0's parameters (unless buffers_only) and buffers."""
    if not world.distributed:
        return
    import torch.distributed as dist

    tensors = []
    for module in modules:
        if not buffers_only:
            tensors += [p.data for p in module.parameters()]
        tensors += [b for b in module.buffers()]
    if tensors:
        with failure("receiving rank 0's " + ("buffers" if buffers_only else "parameters")):
            _flat_collective(tensors, lambda flat: dist.broadcast(flat, 0))


def mean_over_ranks(world: World, values: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The mean of each (scalar) value over the ranks, in one collective."""
    if not world.distributed or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    flat = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    with failure(what):
        dist.all_reduce(flat)
    flat /= world.size
    return dict(zip(keys, flat.unbind(0)))


def largest(world: World, value: int, what: str, device: torch.device) -> int:
    """The largest of `value` over the ranks (e.g. a stop request raised on any rank)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device)
    with failure(what):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def from_rank0(world: World, fn, what: str):
    """Run fn() on rank 0 alone and hand its result (any picklable value) to every rank. When it
    raises a GenforgeError, every rank raises the same error, so the whole job stops with it."""
    if not world.distributed:
        return fn()
    import torch.distributed as dist

    box = [None]
    if world.main:
        try:
            box = [("ok", fn())]
        except GenforgeError as exc:
            box = [("error", str(exc))]
    with failure(f"waiting for rank 0 ({what})"):
        dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise GenforgeError(value)
    return value


def rank_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """The seed of rank `rank`'s random stream (noise, dropout) at `step`: a function of these alone,
    so that a resume at the same world size draws the same numbers without stored RNG states."""
    return ((seed * 1_000_003 + step) * 10_007 + rank) * 101 + micro
