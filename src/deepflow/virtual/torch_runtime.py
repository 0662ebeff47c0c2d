"""Train any ``torch.nn.Module`` with virtual nodes on N worker processes (CPU, gloo).

The mechanism is VirtualFlow's (Or, Zhang, Freedman, MLSys 2022, arXiv 2009.09523;
``wrapped_execution_function`` in the authors' TensorFlow fork, reference sec. 5.1): the
global batch of a step is cut into ``V`` virtual nodes (VNs) of ``B / V`` samples; worker
``r`` of ``N`` processes VNs ``r V/N .. (r+1) V/N - 1`` one after another, each a forward
and backward pass whose gradients accumulate in ``.grad``; then the workers all-reduce (sum)
the accumulated gradients, divide by ``V``, and take one optimizer step::

    g = (1 / V) sum_{j=1..V} grad L_j(w),     L_j = mean loss over VN j

``g`` depends on ``V`` and the data, not on ``N``: the same ``V`` gives the same update on
1, 2 or 4 workers, up to the order of floating-point additions. Per-VN batch statistics
(BatchNorm in training mode) are computed on the VN's ``B / V`` samples, so they too depend
on ``V`` only; module buffers such as running statistics are updated locally on each worker
and are not synchronized (they do not enter the update).

**Uneven mappings.** Worker ``r`` may hold any number ``v_r`` of the ``V`` VNs (``sum v_r =
V``), as the heterogeneous planner (:mod:`deepflow.virtual.hetero`) assigns them: it
processes VNs ``v_0 + .. + v_{r-1}`` onwards; the update is the same sum over all ``V``
VNs.

**Elastic resizing** (VirtualFlow sec. 5.3; the authors' ``deploy/scheduler.py`` issues a
``ResizeEvent``, and the workers then merge communicators, ``mpi_expand``, or keep a
subgroup, re-initialise Horovod with ``V / n`` VNs per device and resume at the same step
without a checkpoint restart). ``train_virtual_nodes(..., resize=[(step, workers), ..])``
changes the membership while training: at a resize step the workers of the new membership
form a new process group, the VNs are re-mapped onto them (``V`` and the global batch stay
fixed), and the group's first worker broadcasts the parameters, buffers and the optimizer
state to every member, so a worker that joins (or rejoins with a stale copy) continues
from the same state. VirtualFlow's code transfers the model variables only, not the
optimizer slots; deepflow also sends the optimizer state, which is what makes the
parameters after ``N`` steps those of the fixed-size run. All processes of the largest
membership are spawned once; a worker outside the current membership waits.

torch is an optional dependency (the ``torch`` extra) and is imported inside the functions,
so ``deepflow.virtual`` imports without it.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["even_counts", "train_virtual_nodes", "virtual_node_step"]


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "deepflow.virtual.torch_runtime needs PyTorch: pip install 'deepflow[torch]'"
        ) from exc
    return torch


def even_counts(virtual_nodes: int, workers: int) -> tuple[int, ...]:
    """``V`` VNs over ``workers`` workers as evenly as possible (the first ``V mod n`` get
    one more)."""
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    q, r = divmod(virtual_nodes, workers)
    return tuple(q + (i < r) for i in range(workers))


def virtual_node_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    virtual_nodes: int,
    rank: int = 0,
    world_size: int = 1,
    *,
    counts: Sequence[int] | None = None,
    group: Any = None,
) -> float:
    """One optimizer step on the global batch ``(inputs, targets)`` with ``virtual_nodes``
    VNs, of which this worker (``rank`` of ``world_size``) processes its contiguous share.

    ``counts`` (one entry per worker, summing to ``virtual_nodes``) gives each worker its
    number of VNs, possibly uneven; without it each worker takes ``V / world_size``.
    Every worker passes the same global batch. With more than one worker a
    ``torch.distributed`` process group must be initialized (``group``: the members, the
    default group if ``None``). Returns the mean loss over all VNs (all-reduced).
    """
    torch = _import_torch()
    batch = inputs.shape[0]
    if virtual_nodes < 1 or batch % virtual_nodes:
        raise ValueError(f"virtual_nodes={virtual_nodes} does not divide the batch of {batch}")
    if counts is None:
        if virtual_nodes % world_size:
            raise ValueError(
                f"virtual_nodes={virtual_nodes} is not a multiple of world_size={world_size}"
            )
        counts = (virtual_nodes // world_size,) * world_size
    counts = tuple(counts)
    if sum(counts) != virtual_nodes or min(counts) < 0:
        raise ValueError(f"counts {counts} must be >= 0 and sum to virtual_nodes={virtual_nodes}")
    world_size = len(counts)
    s = batch // virtual_nodes
    first = sum(counts[:rank])
    optimizer.zero_grad(set_to_none=False)
    total = torch.zeros((), dtype=torch.float64)
    for j in range(first, first + counts[rank]):
        loss = loss_fn(model(inputs[j * s : (j + 1) * s]), targets[j * s : (j + 1) * s])
        loss.backward()  # gradients of successive VNs accumulate in .grad
        total += loss.detach().to(torch.float64)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if counts[rank] == 0:
        # a worker without VNs contributes zero gradients to the all-reduce
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
    if world_size > 1:
        import torch.distributed as dist

        for g in grads:
            dist.all_reduce(g, op=dist.ReduceOp.SUM, group=group)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    for g in grads:
        g.div_(virtual_nodes)
    optimizer.step()
    return float(total) / virtual_nodes


def _phases(
    resize: Sequence[tuple[int, int | Sequence[int]]], virtual_nodes: int, steps: int
) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(first step, end step, VN counts per worker)`` of each membership."""
    out: list[tuple[int, int, tuple[int, ...]]] = []
    prev = -1
    for k, (step, members) in enumerate(resize):
        if k == 0 and step != 0:
            raise ValueError(f"resize must start at step 0, got {step}")
        if step <= prev:
            raise ValueError(f"resize steps must increase: {step} after {prev}")
        prev = step
        if isinstance(members, int):
            counts = even_counts(virtual_nodes, members)
        else:
            counts = tuple(int(c) for c in members)
            if not counts or sum(counts) != virtual_nodes or min(counts) < 0:
                raise ValueError(
                    f"VN counts {counts} at step {step} must be >= 0 and sum to {virtual_nodes}"
                )
        out.append((step, steps, counts))
    return [(a, out[i + 1][0] if i + 1 < len(out) else steps, c) for i, (a, _, c) in enumerate(out)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _share_state(model: Any, optimizer: Any, group: Any) -> None:
    """The group's first worker (global rank 0) sends parameters, buffers and optimizer
    state to every member of ``group``."""
    import torch.distributed as dist

    payload = [{"model": model.state_dict(), "optimizer": optimizer.state_dict()}]
    dist.broadcast_object_list(payload, src=0, group=group)
    model.load_state_dict(payload[0]["model"])
    optimizer.load_state_dict(payload[0]["optimizer"])


def _run(
    rank: int,
    world_size: int,
    port: int,
    model_fn: Callable[[], torch.nn.Module],
    optimizer_fn: Callable[[Any], torch.optim.Optimizer],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batch_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    virtual_nodes: int,
    phases: list[tuple[int, int, tuple[int, ...]]],
    out_path: str | None,
    stale_fn: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    torch = _import_torch()
    torch.set_num_threads(1)
    distributed = world_size > 1
    if distributed:
        import torch.distributed as dist

        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = model_fn()
        optimizer = optimizer_fn(model.parameters())
        if stale_fn is not None and rank > 0:
            stale_fn(model)  # a joining worker's copy is not the job's
        for first, end, counts in phases:
            members = len(counts)
            group = None
            if distributed:
                # every process takes part in creating every group (torch.distributed rule)
                group = dist.new_group(list(range(members)))
            if rank >= members:
                continue  # not in this membership: wait for the next resize
            if members > 1:
                _share_state(model, optimizer, group)
            for step in range(first, end):
                x, y = batch_fn(step)
                virtual_node_step(
                    model,
                    optimizer,
                    loss_fn,
                    x,
                    y,
                    virtual_nodes,
                    rank,
                    counts=counts,
                    group=group,
                )
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out_path is not None and rank == 0:
            torch.save(state, out_path)
        if distributed:
            dist.barrier()  # nobody leaves the group while others still talk
        return state
    finally:
        if distributed:
            dist.destroy_process_group()


def train_virtual_nodes(
    model_fn: Callable[[], torch.nn.Module],
    optimizer_fn: Callable[[Any], torch.optim.Optimizer],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batch_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    virtual_nodes: int,
    steps: int,
    world_size: int = 1,
    counts: Sequence[int] | None = None,
    resize: Sequence[tuple[int, int | Sequence[int]]] | None = None,
    stale_fn: Callable[[Any], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train ``model_fn()`` for ``steps`` steps with ``virtual_nodes`` VNs on CPU worker
    processes (gloo); return the final ``state_dict``.

    ``batch_fn(step)`` returns the global batch ``(inputs, targets)`` of a step (the same
    on every worker); ``optimizer_fn(parameters)`` builds the optimizer. The membership is
    ``world_size`` workers with ``V / world_size`` VNs each, or ``counts`` (VNs per
    worker, possibly uneven), or ``resize``: ``[(step, workers or counts), ...]`` from
    step 0, the membership changing at each listed step (workers ``0 .. n-1`` are the
    members; ``workers`` maps the VNs as evenly as possible). ``stale_fn(model)`` is
    applied to the model of every worker but the first at start (to show that joining
    workers receive the job's state). With one worker throughout the training runs in this
    process; otherwise the workers are spawned, so the callables must be picklable
    (module-level functions or ``functools.partial`` of them).
    """
    torch = _import_torch()
    if resize is None:
        if counts is None:
            if virtual_nodes % world_size:
                raise ValueError(
                    f"virtual_nodes={virtual_nodes} is not a multiple of world_size={world_size}"
                )
            counts = (virtual_nodes // world_size,) * world_size
        resize = [(0, tuple(counts))]
    phases = _phases(resize, virtual_nodes, steps)
    processes = max(len(c) for _, _, c in phases)
    if processes == 1:
        threads = torch.get_num_threads()
        try:
            return _run(
                0, 1, 0, model_fn, optimizer_fn, loss_fn, batch_fn, virtual_nodes, phases, None
            )
        finally:
            torch.set_num_threads(threads)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "state.pt")
        args = (
            processes,
            _free_port(),
            model_fn,
            optimizer_fn,
            loss_fn,
            batch_fn,
            virtual_nodes,
            phases,
            out,
            stale_fn,
        )
        mp.spawn(_run, args=args, nprocs=processes, join=True)
        return torch.load(out, weights_only=True)
