"""Collectives that degrade to identities on one process, so models never branch on world size;
and the launcher the entry points share."""
from __future__ import annotations

import functools
import inspect
import multiprocessing
import os

import torch
import torch.distributed as dist
from torch import Tensor


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask under SLURM or taskset, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call outside Linux
        return os.cpu_count() or 1


def default_num_workers(most: int = 4) -> int:
    """What ``--num-workers`` defaults to: ``most``, or the usable CPUs where fewer (more workers than
    CPUs only compete for them, and torch's DataLoader warns about it)."""
    return min(most, usable_cpus())


def is_dist() -> bool:
    """Whether a process group is up (false in a one-process run)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0 (rank order); no gradient."""
    if not is_dist():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank; gradients flow back to each rank's own rows."""
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x.contiguous()))


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable sum over ranks."""
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(x)


@torch.no_grad()
def all_reduce_sum_no_grad(x: Tensor) -> Tensor:
    """``x`` summed over the ranks (``x`` itself when not distributed); the input is left untouched."""
    if is_dist():
        x = x.clone()
        dist.all_reduce(x)
    return x


def ddp_no_buffer_sync() -> dict[str, bool]:
    """DDP kwargs that leave each rank's buffers alone in forward (upstream's broadcast_buffers=False).
    torch 2.14 deprecates that flag for forward_sync_buffers, which differs only in one sync of
    the buffers at start-up: harmless here, since every rank starts from the same seed."""
    from torch.nn.parallel import DistributedDataParallel
    new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if new else {"broadcast_buffers": False}


def platform_start_method() -> str:
    """How this platform starts processes by default ("fork" on Linux, "spawn" on macOS and Windows)."""
    return multiprocessing.get_all_start_methods()[0]


IGNITE_INFO_LOGGERS = ("ignite.distributed.launcher.Parallel", "ignite.distributed.auto.auto_model")


def quiet_ignite_info() -> None:
    """Silence the launcher's and auto_model's per-run INFO lines. Ignite leaves a logger that
    already exists as it is, so this must run before they are first made, in each process."""
    import logging
    for name in IGNITE_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _with_platform_start_method(fn, local_rank: int, args) -> None:
    # A process made by the launcher's spawn inherits "spawn" as its start method, so each of its
    # DataLoaders would start workers that import torch and this project afresh, and the k-NN
    # loaders are made anew at every evaluation, each importing everything again. Its workers
    # start as under torchrun or in one process.
    if multiprocessing.parent_process() is not None:  # a process the launcher spawned, not the caller's
        multiprocessing.set_start_method(platform_start_method(), force=True)
        quiet_ignite_info()
    fn(local_rank, args)


def launch(fn, args, backend: str | None, nproc: int | None) -> None:
    """Run ``fn(local_rank, args)`` through ignite.distributed.Parallel (spawned, from torchrun/SLURM,
    or in this process), with Ignite's per-run INFO lines silenced. Spawned processes start
    their DataLoader workers the platform's default way, as every other launch does; while they run,
    the ``args.preempt_signals`` this process receives are sent on to them."""
    import ignite.distributed as idist

    from .preemption import forwarded_to_children
    quiet_ignite_info()
    spawned = backend is not None and nproc is not None
    forwarded = (getattr(args, "preempt_signals", None) or []) if spawned else []
    with forwarded_to_children(forwarded), idist.Parallel(backend=backend, nproc_per_node=nproc) as parallel:
        parallel.run(functools.partial(_with_platform_start_method, fn), args)
