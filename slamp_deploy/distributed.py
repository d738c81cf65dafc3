"""Several processes (and GPUs) with PyTorch's own engine: ``torchrun ... -m slamp_deploy``.

What scales: retraining (DistributedDataParallel, data sharded with DistributedSampler) and the
data passes of calibration, current matching and evaluation (each rank takes a shard and the
sums are all-reduced, so every rank computes the same scores and the same masks). What does not:
scoring, allocation, the fit check and export run on every rank (they are cheap) or on rank 0
only (writing files, Lava, printing).

Single-process runs never touch torch.distributed: every helper here degrades to a no-op.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from slamp_deploy.errors import SlampError, UsageError


class DistributedError(SlampError):
    """Ranks disagree, or a rank failed or timed out."""


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init(device: str, timeout_s: float) -> World:
    """Join the process group torchrun set up: gloo on CPU, nccl on CUDA, picked automatically."""
    rank, size, local = env_world()
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        except Exception as e:
            raise DistributedError(f"rank {rank}: cannot join the process group ({e}); start "
                                   f"with torchrun --nproc_per_node N -m slamp_deploy ...") from e
    return World(rank=rank, size=size, local_rank=local, backend=dist.get_backend())


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


# Tensors handed to a collective stay referenced from Python until the process ends. A gloo
# worker thread drops its own reference to a finished collective's tensors only after the caller
# has moved on; if that is the last reference, the thread must take the GIL to free the tensor,
# and if Python is finalizing by then the thread cannot, and the process aborts ("terminate
# called without an active exception", seen under load on 2 cores). destroy_process_group() does
# not prevent it: after DistributedDataParallel the group, with its threads, outlives it. The
# tensors kept here are small (sums per layer, loss totals, counts).
_KEEP: list[torch.Tensor] = []


def _keep(t: torch.Tensor) -> torch.Tensor:
    _KEEP.append(t)
    return t


def current() -> World:
    """The world this process belongs to (after :func:`init`)."""
    if dist.is_available() and dist.is_initialized():
        return World(rank=dist.get_rank(), size=dist.get_world_size(),
                     local_rank=env_world()[2], backend=dist.get_backend())
    return World()


def shard_indices(n: int, world: World) -> np.ndarray:
    """This rank's share of ``n`` samples (strided, so shards differ by at most one)."""
    return np.arange(world.rank, n, world.size)


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _collective(what: str, fn) -> None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except Exception as e:
        raise DistributedError(f"rank {dist.get_rank()}: {what} failed ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); another rank "
                               f"probably failed or timed out, see its error") from e


def all_reduce_sum(arr: np.ndarray) -> np.ndarray:
    """Sum a float64 array over all ranks (returns the input unchanged on one process)."""
    w = current()
    if not w.active:
        return arr
    t = _keep(torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float64)).to(_device()))
    _collective("all_reduce", lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    return t.cpu().numpy()


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks, in place on a copy (float64 for determinism of the sum)."""
    w = current()
    if not w.active:
        return t
    out = _keep(t.detach().double().to(_device()).clone())
    _collective("all_reduce", lambda: dist.all_reduce(out, op=dist.ReduceOp.SUM))
    return out.to(t.device)


def masks_digest(masks: Mapping[str, torch.Tensor]) -> str:
    """A short hash of every mask, to compare across ranks."""
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode())
        h.update(masks[name].detach().cpu().numpy().astype(np.uint8).tobytes())
    return h.hexdigest()[:16]


def check_same_masks(masks: Mapping[str, torch.Tensor]) -> list[str]:
    """Every rank's mask digest; raises if any rank's masks differ from rank 0's."""
    mine = masks_digest(masks)
    w = current()
    if not w.active:
        return [mine]
    gathered: list[str | None] = [None] * w.size
    _collective("all_gather of mask digests",
                lambda: dist.all_gather_object(gathered, mine))
    digests = [str(d) for d in gathered]
    bad = [r for r, d in enumerate(digests) if d != digests[0]]
    if bad:
        raise DistributedError(f"masks differ across ranks (rank 0 {digests[0]}, rank(s) "
                               f"{', '.join(map(str, bad))} differ); calibration statistics were "
                               f"not reduced identically; rerun with the same seed and data")
    return digests


def check_batch(global_batch: int, world: World) -> int:
    """The per-rank batch size; the world size must divide the global batch."""
    if global_batch % world.size:
        raise UsageError(f"--batch-size {global_batch} is not divisible by the world size "
                         f"{world.size}; pass a multiple of {world.size} (the batch size is "
                         f"global: each rank takes batch-size / world-size samples)")
    return global_batch // world.size


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's non-state buffers (BatchNorm statistics) to every rank."""
    w = current()
    if not w.active:
        return
    for name, buf in module.named_buffers():
        if name.rsplit(".", 1)[-1] in ("mem", "syn") or buf.numel() == 0:
            continue
        t = _keep(buf.detach().to(_device()).clone())
        _collective(f"broadcast of {name}", lambda t=t: dist.broadcast(t, src=0))
        with torch.no_grad():
            buf.copy_(t.to(buf.device))
