"""One run on several processes (``torchrun``): the collectives the trainers and the sampler use.

Introduced in the README ("Several GPUs or machines"). Under ``torchrun --nproc_per_node K`` every
process (a *rank*) runs the same program; :func:`init` joins them into one process group (NCCL on
CUDA, gloo on the CPU) and puts rank r on GPU ``LOCAL_RANK``. The trainers then train ONE run
together (``dpo_lab.lm.train``, DDP semantics):

===============  ==================================================================================
what             how
===============  ==================================================================================
a step's batch   the B indices of a step, in the step's order, cut into K contiguous shares
                 (:func:`share`); each rank runs the micro-batches of its share
the loss         each rank's summed contributions / the GLOBAL B, so summing over ranks
                 (:func:`all_reduce_grads`, :func:`sum_floats`) gives one process's gradient and loss
weights          the same gradient, clipped and stepped on every rank: identical weights, no broadcast
metrics          per-pair log-probs gathered in rank order (:func:`gather_rows`): the batch of one process
evaluation       ``lm.sample`` splits each sampling batch's rows over the ranks with the random numbers
                 one process would draw, and gathers the samples (``dpo_lab.lm.sampling``)
the run store    written by rank 0 only; the others read it after a :func:`barrier`
===============  ==================================================================================

With one process (no ``WORLD_SIZE`` > 1, or inside :func:`solo`) every function here returns at once
and the trainers run exactly the single-process code. :func:`solo` is for work that rank 0 does alone
while the others wait (building the task's data, a trainer that does not split its steps).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable

import torch

#: How long a rank waits in a collective: rank 0 may build pi_SFT or train a reward model alone meanwhile.
TIMEOUT = datetime.timedelta(hours=24)
#: Gradient elements all-reduced in one message (2**25 floats = 128 MB of float32).
BUCKET = 2**25

_solo_depth = 0


def init() -> tuple[int, int]:
    """Join the process group when launched by ``torchrun`` with ``WORLD_SIZE`` > 1 (idempotent) and
    return ``(rank, world size)``; ``(0, 1)`` otherwise. On CUDA each rank takes GPU ``LOCAL_RANK``
    (so ``"cuda"`` means that GPU): call this before loading models."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return rank(), world_size()


def world_size() -> int:
    """Processes training the current run: the group's size, 1 without a group or inside :func:`solo`."""
    if _solo_depth or not torch.distributed.is_initialized():
        return 1
    return torch.distributed.get_world_size()


def rank() -> int:
    """This process's rank in the group: 0 without a group or inside :func:`solo` (a group of one)."""
    if _solo_depth or not torch.distributed.is_initialized():
        return 0
    return torch.distributed.get_rank()


@contextlib.contextmanager
def solo():
    """Inside it this process works alone: :func:`world_size` is 1, so trainers and the sampler run
    their single-process code and issue no collective."""
    global _solo_depth
    _solo_depth += 1
    try:
        yield
    finally:
        _solo_depth -= 1


def barrier() -> None:
    """Wait for every rank (nothing with one process)."""
    if world_size() > 1:
        torch.distributed.barrier()


def rank_zero_first(fn: Callable[[], object]) -> object:
    """``fn()`` on rank 0 alone (:func:`solo`), then on the others once it returned: for work whose
    result rank 0 stores and the others then find stored (a cached run, a run's folder)."""
    if world_size() == 1:
        return fn()
    main = rank() == 0
    if main:
        with solo():
            out = fn()
    barrier()
    if not main:
        with solo():
            out = fn()
    return out


def on_rank_zero(fn: Callable[..., object], *args) -> object:
    """``fn(*args)`` on rank 0 alone (:func:`solo`) while the others wait; its result (picklable) on
    every rank: for work that does not split over processes (a reward model, Best-of-N in the sweep)."""
    if world_size() == 1:
        return fn(*args)
    out = None
    if rank() == 0:
        with solo():
            out = fn(*args)
    return broadcast(out)


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if world_size() == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def share(items: list) -> list:
    """This rank's contiguous share of ``items``: rank r of K gets ``items[len * r // K : len * (r + 1) // K]``,
    so the shares in rank order are ``items`` again (a rank may get none when there are fewer than K)."""
    k, r = world_size(), rank()
    if k == 1:
        return items
    return items[len(items) * r // k : len(items) * (r + 1) // k]


def _device() -> torch.device:
    """Where collectives' tensors live: the current GPU for NCCL, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_floats(*values: float) -> list[float]:
    """The sums over ranks of each of ``values`` (float64)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(t)
    return t.tolist()


def all_true(mask: torch.Tensor) -> torch.Tensor:
    """Elementwise AND over ranks of a bool tensor (same shape on every rank)."""
    if world_size() == 1:
        return mask
    t = mask.to(device=_device(), dtype=torch.int32)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return t.to(mask.device).bool()


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``t`` (any number each, the other dims equal), concatenated in rank order."""
    if world_size() == 1:
        return t
    parts = gather_objects(t.detach().cpu())
    return torch.cat(parts).to(t.device)


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in place (a rank without one contributes zeros),
    in messages of at most :data:`BUCKET` elements of one dtype."""
    if world_size() == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    buckets: list[list[torch.Tensor]] = []
    for g in (p.grad for p in params):
        last = buckets[-1] if buckets else None
        if last is None or last[0].dtype != g.dtype or sum(x.numel() for x in last) + g.numel() > BUCKET:
            buckets.append([g])
        else:
            last.append(g)
    for bucket in buckets:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        torch.distributed.all_reduce(flat)
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))


def check_device(model) -> None:
    """Refuse a model on another GPU than this rank's (loaded before :func:`init` set the device)."""
    device = next(model.parameters()).device
    if world_size() > 1 and device.type == "cuda" and device.index != torch.cuda.current_device():
        raise ValueError(
            f"model: on {device}, but rank {rank()} trains on cuda:{torch.cuda.current_device()}; "
            "call dpo_lab.lm.distributed.init() before loading models"
        )
