"""Where and how networks run: the device, mixed precision, channels-last memory format and
torch.compile. The ground floor: imports no family and nothing above it."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time

import torch
from torch import nn

from .errors import GenforgeError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenforgeError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device(name)


def uses_convolutions(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in net.modules())


def to_channels_last(nets: dict[str, nn.Module], enabled: bool = True) -> bool:
    """Put convolutional networks in channels-last (NHWC) memory format, in place.

    oneDNN (CPU) and cuDNN (GPU) run convolutions natively in NHWC; with NCHW weights and inputs
    every convolution reorders its operands first. Dense networks are left alone (the format is
    meaningless for them). Returns True when any network was converted, i.e. when batches should
    be channels-last too.
    """
    converted = False
    for net in nets.values():
        if enabled and uses_convolutions(net):
            net.to(memory_format=torch.channels_last)
            converted = True
    return converted


def autocast(device: torch.device, precision: str):
    """Mixed precision context for the forward passes; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), from PyTorch's cpuinfo.

    Without them oneDNN emulates bf16 and autocast is slower than fp32, so 'auto' stays fp32.
    """
    try:
        flags = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # older or non-x86 builds: no flags, no claim
        return False
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def resolve_precision(device: torch.device, precision: str, convolutional: bool = True) -> str:
    """'auto' -> the fastest precision the device runs natively; other values are returned as given.

    CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16 with a gradient scaler.
    CPU: bf16 for convolutional networks where cpu_has_native_bf16(), else fp32: the small dense
    networks gained nothing measurable from bf16 on CPU (docs/performance.md), the casts eat the
    gain. Anything else (mps, xpu, ...): fp32.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu" and convolutional and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


class Precision:
    """Autocast plus, for fp16, one gradient scaler per optimiser (bf16 needs none).

    `precision` may be 'auto'; the resolved value is in `self.precision`.
    """

    def __init__(self, device: torch.device, precision: str, names: list[str], grad_hook=None):
        precision = resolve_precision(device, precision)
        self.device, self.precision = device, precision
        enabled = precision == "fp16"
        self.scalers = {n: torch.amp.GradScaler(device.type, enabled=enabled) for n in names}
        self.grad_hook = grad_hook
        """Called as grad_hook(name, optimizer) between the last backward pass and the optimiser
        step (the training loop averages gradients over distributed ranks there)."""
        self.micro_batches, self._micro = 1, 0
        self._calls: dict[str, int] = {}
        self._stash: dict[tuple[str, int], list[torch.Tensor]] = {}

    def context(self):
        return autocast(self.device, self.precision)

    def begin_micro_batch(self, index: int, count: int) -> None:
        """Gradient accumulation (train.accumulate): the step is about to run on micro-batch `index`
        of `count`. Until the last one, backward_step only adds the gradients to a stash (each loss
        divided by `count`, so the sum is the gradient of the mean); the last one steps."""
        self.micro_batches, self._micro, self._calls = count, index, {}
        if index == 0:
            self._stash = {}

    def backward_step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.backward_steps(loss, {name: optimizer})

    def backward_steps(self, loss: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """One loss for one or more networks (e.g. a denoiser and the text encoder trained with it):
        one scaled backward (by the first network's scaler), then every optimiser steps through the
        gradient hook, so torchrun's averaging and train.accumulate see each of them."""
        scaler = self.scalers[next(iter(optimizers))]
        if self.micro_batches > 1:
            loss = loss / self.micro_batches
        scaler.scale(loss).backward()
        if self.micro_batches > 1:
            last = self._micro == self.micro_batches - 1
            for name, optimizer in optimizers.items():
                # The n-th backward_step of `name` in each micro-batch adds up with the n-th of the others
                # (a GAN step may update its discriminator several times).
                key = (name, self._calls.get(name, 0))
                self._calls[name] = key[1] + 1
                params = [p for group in optimizer.param_groups for p in group["params"]]
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                stash = self._stash.get(key)
                if stash is not None:
                    torch._foreach_add_(grads, stash)
                if not last:
                    self._stash[key] = grads  # zero_grad(set_to_none) below lets go of them
                    optimizer.zero_grad(set_to_none=True)
                    continue
                for p, g in zip(params, grads):
                    p.grad = g
            if not last:
                return
        for name, optimizer in optimizers.items():
            if self.grad_hook is not None:
                self.grad_hook(name, optimizer)
            scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict:
        return {n: s.state_dict() for n, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for n, s in self.scalers.items():
            if n in state and state[n]:
                s.load_state_dict(state[n])


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here (one short reason), or None when it can."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            return f"not supported on Python {sys.version_info.major}.{sys.version_info.minor}"
        if device.type == "cuda":
            from torch.utils._triton import has_triton
            if not has_triton():
                return "Triton is not installed"
        elif device.type == "cpu":
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()  # raises when no C++ compiler is found
    except Exception as exc:  # an import or toolchain failure: all mean "no compiler"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:100] if str(exc).strip() else 'no detail'}"
    return None


def compile_networks(nets: dict[str, nn.Module], device: torch.device, log=print) -> dict[str, nn.Module]:
    """torch.compile'd wrappers for the step function, or `nets` unchanged (and one log line) when
    the compiler is unavailable.

    The wrappers share parameters and buffers with `nets`, so the loop keeps checkpointing, EMA
    and sampling the plain modules (whose state-dict keys and deep copies stay those of eager mode).
    """
    reason = compile_unavailable(device)
    if reason:
        log(f"torch.compile is unavailable ({reason}); training in eager mode")
        return nets
    return {name: torch.compile(net) for name, net in nets.items()}


# --- CPU threads --------------------------------------------------------------------------------------
# With more torch threads than free cores, every OpenMP region waits for a thread the scheduler has
# parked: on a 2-core machine at load 10-14, two threads trained the demo at 35-65 images/s where one
# thread ran at 578-640 (issue 18). So 'auto' counts the cores other processes keep busy and uses
# only the free ones (at least one). benchmarks/bench_threads.py measures the choice under a load it
# starts itself.

def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.02) -> float:
    """How many cores other processes keep busy: the larger of the 1-minute load average and the
    median number of runnable tasks right now (minus this one), from /proc/loadavg. The load
    average lags a load that just started by a minute; the runnable count does not."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return 0.0
    runnable = []
    try:
        for i in range(samples):
            with open("/proc/loadavg", encoding="ascii") as f:
                runnable.append(int(f.read().split()[3].split("/")[0]) - 1)
            if i + 1 < samples:
                time.sleep(interval)
    except (OSError, ValueError, IndexError):
        runnable = [0]
    return max(load1, float(sorted(runnable)[len(runnable) // 2]))


def auto_threads(cores: int | None = None, busy: float | None = None) -> int:
    """Torch threads for this machine now: the cores left free by other processes, at least 1."""
    cores = cpu_count() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def set_threads(threads: int | str = "auto", log=None) -> int:
    """Set torch's intra-op threads: a number, or 'auto' (see auto_threads). With 'auto' an
    OMP_NUM_THREADS in the environment wins (the user chose), and a choice below the CPU count is
    announced in one line through `log`. Returns the number used."""
    if threads == "auto" or threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        cores, busy = cpu_count(), busy_cores()
        chosen = auto_threads(cores, busy)
        if chosen < cores and log is not None:
            log(f"genforge: other work keeps {busy:.1f} of {cores} cores busy (load average / runnable tasks): "
                f"using {chosen} torch thread{'s' if chosen > 1 else ''} (--threads N to choose)")
    else:
        try:
            chosen = int(threads)
        except (TypeError, ValueError):
            chosen = 0
        if chosen < 1:
            raise GenforgeError(f"--threads takes a positive number or auto, got {threads!r}; e.g. --threads 1")
    torch.set_num_threads(chosen)
    return chosen
