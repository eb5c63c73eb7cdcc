"""Scale-out under torchrun: which share of the files a process takes, its device, and one summary for all.

`torchrun --nproc_per_node N -m unetsr.infer FOLDER -o OUT` starts N copies; each plans the same sorted
job list and takes every N-th job from its rank on (each file processed once), on its own GPU
(LOCAL_RANK) or its share of the CPU threads. The per-rank counts are summed over gloo at the end, so
rank 0 prints one summary and every rank exits with the same status. Outside torchrun nothing changes.
The environment is read by the one strict parser, `unetsr.core.torchrun.from_environment`: a malformed
one is an error, never one process doing everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from unetsr.core.torchrun import Rank

T = TypeVar("T")


def shard(items: Sequence[T], rank: Rank) -> list[T]:
    """Every `world`-th item from `rank` on: together the ranks take each item exactly once."""
    return list(items[rank.rank::rank.world])


def start(rank: Rank, device: str) -> str:
    """Join the gloo process group when there are several ranks (whatever runs the model, torch or ONNX:
    `total` needs the group); the device name this rank should use.

    With CUDA each rank takes GPU LOCAL_RANK; on the CPU each takes an equal share of the cores.
    """
    if rank.world == 1:
        return device
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{rank.local % torch.cuda.device_count()}"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // rank.local_world))
    return "cpu" if device == "auto" else device


def total(rank: Rank, counts: Sequence[int]) -> list[int]:
    """`counts` summed over all ranks (then the process group is left); as they are for a single process."""
    if rank.world == 1:
        return list(counts)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():  # a caller that skipped `start` would die here on every rank
        raise RuntimeError("sharding.total needs the process group that sharding.start joins")
    summed = torch.tensor(list(counts), dtype=torch.int64)
    dist.all_reduce(summed)
    dist.destroy_process_group()
    return [int(v) for v in summed]
