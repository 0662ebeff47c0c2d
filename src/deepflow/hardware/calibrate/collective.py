"""Collective timing across the visible GPUs, one process per GPU (``torch.distributed``).

Each process joins a process group (NCCL on CUDA, RCCL behind the same ``nccl`` name on
ROCm, Gloo on CPUs for tests), and every rank times each collective with the same method as
the single-device kernels (warm-up, repeats, median); the recorded time is the largest
median over the ranks (the collective ends when its slowest rank does).

``bytes`` is the message size in nccl-tests' convention (``nccl-tests``, ``src/common.cu``
and the per-collective ``*GetCollByteCount``): the size of the largest per-rank buffer,
that is the all-reduce buffer, the all-gather *output*, the reduce-scatter *input*, and the
all-to-all send buffer.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

__all__ = ["COLLECTIVES", "collective_sizes", "measure_collectives"]

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def collective_sizes(quick: bool) -> list[int]:
    """1 KiB to 1 GiB in steps of 4 (quick: 1 KiB and 64 KiB)."""
    if quick:
        return [1 << 10, 64 << 10]
    return [1 << (10 + 2 * i) for i in range(11)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(
    rank: int,
    world: int,
    port: int,
    backend: str,
    sizes: list[int],
    ops: list[str],
    repeats: int,
    budget_s: float,
    queue: Any,
) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    gpu = backend == "nccl"
    if gpu:
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if gpu else torch.device("cpu")
    dist.init_process_group(backend, rank=rank, world_size=world)
    records = []
    skipped = 0
    start = time.perf_counter()
    try:
        for op in ops:
            for size in sizes:
                # rank 0 decides whether time is left and tells every rank
                go = torch.tensor(
                    [1 if time.perf_counter() - start < budget_s else 0], device=device
                )
                dist.broadcast(go, 0)
                if not int(go.item()):
                    skipped += 1
                    continue
                t = _time_one(torch, dist, op, size, world, device, gpu, repeats)
                worst = torch.tensor([t], dtype=torch.float64, device=device)
                dist.all_reduce(worst, op=dist.ReduceOp.MAX)
                if rank == 0:
                    records.append(
                        {
                            "kind": "collective",
                            "op": op,
                            "ranks": world,
                            "bytes": size,
                            "time_s": float(worst.item()),
                            "repeats": repeats,
                        }
                    )
    finally:
        if rank == 0:
            queue.put((records, skipped))
        dist.destroy_process_group()


def _time_one(
    torch: Any, dist: Any, op: str, size: int, world: int, device: Any, gpu: bool, repeats: int
) -> float:
    n = max(world, (size // 4) // world * world)  # float32 elements, divisible by ranks
    big = torch.ones(n, dtype=torch.float32, device=device)
    small = torch.ones(n // world, dtype=torch.float32, device=device)
    out = torch.empty_like(big)
    # PyTorch >= 2.13 names the single-tensor forms *_single; older ones *_tensor
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    if op == "all_reduce":

        def call() -> None:
            dist.all_reduce(big)
    elif op == "all_gather":

        def call() -> None:
            gather(out, small)
    elif op == "reduce_scatter":

        def call() -> None:
            scatter(small, big)
    else:

        def call() -> None:
            dist.all_to_all_single(out, big)

    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        dist.barrier()
        if gpu:
            torch.cuda.synchronize()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            call()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) * 1e-3)
        else:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_collectives(
    ranks: int, backend: str, quick: bool, budget_s: float
) -> tuple[list[dict[str, object]], int]:
    """Time every collective of :data:`COLLECTIVES` at every size of
    :func:`collective_sizes` over ``ranks`` processes; the records and how many
    (collective, size) pairs the time budget ``budget_s`` left out."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    sizes = collective_sizes(quick)
    repeats = 3 if quick else 10
    mp.start_processes(
        _worker,
        args=(ranks, _free_port(), backend, sizes, list(COLLECTIVES), repeats, budget_s, queue),
        nprocs=ranks,
        join=True,
        start_method="spawn",
    )
    records, skipped = queue.get()
    return records, skipped
