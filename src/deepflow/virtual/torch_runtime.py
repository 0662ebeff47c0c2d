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

torch is an optional dependency (the ``torch`` extra) and is imported inside the functions,
so ``deepflow.virtual`` imports without it.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["train_virtual_nodes", "virtual_node_step"]


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "deepflow.virtual.torch_runtime needs PyTorch: pip install 'deepflow[torch]'"
        ) from exc
    return torch


def virtual_node_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    virtual_nodes: int,
    rank: int = 0,
    world_size: int = 1,
) -> float:
    """One optimizer step on the global batch ``(inputs, targets)`` with ``virtual_nodes``
    VNs, of which this worker (``rank`` of ``world_size``) processes its contiguous share.

    Every worker passes the same global batch. With ``world_size > 1`` a
    ``torch.distributed`` process group must be initialized. Returns the mean loss over all
    VNs (all-reduced).
    """
    torch = _import_torch()
    batch = inputs.shape[0]
    if virtual_nodes < 1 or batch % virtual_nodes:
        raise ValueError(f"virtual_nodes={virtual_nodes} does not divide the batch of {batch}")
    if virtual_nodes % world_size:
        raise ValueError(
            f"virtual_nodes={virtual_nodes} is not a multiple of world_size={world_size}"
        )
    s = batch // virtual_nodes
    per_worker = virtual_nodes // world_size
    optimizer.zero_grad(set_to_none=False)
    total = torch.zeros((), dtype=torch.float64)
    for j in range(rank * per_worker, (rank + 1) * per_worker):
        loss = loss_fn(model(inputs[j * s : (j + 1) * s]), targets[j * s : (j + 1) * s])
        loss.backward()  # gradients of successive VNs accumulate in .grad
        total += loss.detach().to(torch.float64)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if world_size > 1:
        import torch.distributed as dist

        for g in grads:
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    for g in grads:
        g.div_(virtual_nodes)
    optimizer.step()
    return float(total) / virtual_nodes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(
    rank: int,
    world_size: int,
    port: int,
    model_fn: Callable[[], torch.nn.Module],
    optimizer_fn: Callable[[Any], torch.optim.Optimizer],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batch_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    virtual_nodes: int,
    steps: int,
    out_path: str | None,
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
        if distributed:
            # every worker starts from rank 0's parameters
            for p in model.parameters():
                dist.broadcast(p.data, src=0)
        optimizer = optimizer_fn(model.parameters())
        for step in range(steps):
            x, y = batch_fn(step)
            virtual_node_step(model, optimizer, loss_fn, x, y, virtual_nodes, rank, world_size)
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
) -> dict[str, torch.Tensor]:
    """Train ``model_fn()`` for ``steps`` steps with ``virtual_nodes`` VNs on
    ``world_size`` CPU worker processes (gloo); return the final ``state_dict``.

    ``batch_fn(step)`` returns the global batch ``(inputs, targets)`` of a step (the same
    on every worker); ``optimizer_fn(parameters)`` builds the optimizer. With
    ``world_size == 1`` the training runs in this process; otherwise the workers are
    spawned, so the callables must be picklable (module-level functions or
    ``functools.partial`` of them).
    """
    torch = _import_torch()
    if virtual_nodes % world_size:
        raise ValueError(
            f"virtual_nodes={virtual_nodes} is not a multiple of world_size={world_size}"
        )
    if world_size == 1:
        threads = torch.get_num_threads()
        try:
            return _run(
                0, 1, 0, model_fn, optimizer_fn, loss_fn, batch_fn, virtual_nodes, steps, None
            )
        finally:
            torch.set_num_threads(threads)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "state.pt")
        args = (
            world_size,
            _free_port(),
            model_fn,
            optimizer_fn,
            loss_fn,
            batch_fn,
            virtual_nodes,
            steps,
            out,
        )
        mp.spawn(_run, args=args, nprocs=world_size, join=True)
        return torch.load(out, weights_only=True)
