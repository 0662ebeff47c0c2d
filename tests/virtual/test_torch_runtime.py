"""The virtual-node runtime's update does not depend on the number of workers (VirtualFlow,
Or et al., MLSys 2022, arXiv 2009.09523): same V, same parameters on 1, 2 and 4 processes."""

from __future__ import annotations

import functools
import importlib.util

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip(
        "torch is not installed (the optional 'torch' extra); the runtime test needs it",
        allow_module_level=True,
    )

import torch

from deepflow.virtual.torch_runtime import train_virtual_nodes, virtual_node_step

BATCH, FEATURES, V, STEPS = 32, 8, 8, 20


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()


def make_optimizer(params, lr: float = 0.05) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(BATCH, FEATURES, generator=g, dtype=torch.float64)
    y = x.sum(dim=1, keepdim=True).sin()
    return x, y


loss = torch.nn.functional.mse_loss


def train(world_size: int) -> dict[str, torch.Tensor]:
    return train_virtual_nodes(
        make_model,
        functools.partial(make_optimizer),
        loss,
        batch,
        virtual_nodes=V,
        steps=STEPS,
        world_size=world_size,
    )


def test_same_parameters_on_1_2_4_workers() -> None:
    reference = train(1)
    start = make_model().state_dict()
    assert any(not torch.equal(reference[k], start[k]) for k in start)  # it trained
    for n in (2, 4):
        other = train(n)
        for key, value in reference.items():
            torch.testing.assert_close(other[key], value, rtol=1e-12, atol=1e-12)


def test_one_worker_equals_the_full_batch_mean_gradient() -> None:
    """Summing V per-VN mean gradients and dividing by V is the full-batch mean gradient."""
    model, full = make_model(), make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_full = torch.optim.SGD(full.parameters(), lr=0.1)
    x, y = batch(0)
    virtual_node_step(model, opt, loss, x, y, virtual_nodes=V)
    opt_full.zero_grad()
    loss(full(x), y).backward()
    opt_full.step()
    for a, b in zip(model.parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_rejects_indivisible_virtual_nodes() -> None:
    model = make_model()
    opt = make_optimizer(model.parameters())
    x, y = batch(0)
    with pytest.raises(ValueError, match="does not divide"):
        virtual_node_step(model, opt, loss, x, y, virtual_nodes=5)


def make_stale(model: torch.nn.Module) -> None:
    """What a joining worker holds before it receives the job's state: other numbers."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)


def test_resize_4_2_3_workers_matches_the_fixed_size_run() -> None:
    """The job shrinks from 4 workers to 2 and grows to 3 (8 VNs as 3 + 3 + 2) while
    training; workers 1..3 start from other parameters and an empty optimizer state, so
    the result is the fixed-size run's only if every (re)joining worker receives the
    parameters and the momentum buffers."""
    reference = train(1)
    resized = train_virtual_nodes(
        make_model,
        functools.partial(make_optimizer),
        loss,
        batch,
        virtual_nodes=V,
        steps=STEPS,
        resize=[(0, 4), (7, 2), (14, 3)],
        stale_fn=make_stale,
    )
    for key, value in reference.items():
        torch.testing.assert_close(resized[key], value, rtol=1e-12, atol=1e-12)


def test_uneven_virtual_node_counts_match_the_even_run() -> None:
    """Counts as the heterogeneous planner gives them (5 and 3 of 8 VNs; then 8 and 0)
    update as the even 4 + 4 mapping does."""
    even = train(2)
    uneven = train_virtual_nodes(
        make_model,
        functools.partial(make_optimizer),
        loss,
        batch,
        virtual_nodes=V,
        steps=STEPS,
        resize=[(0, (5, 3)), (10, (8, 0))],
    )
    for key, value in even.items():
        torch.testing.assert_close(uneven[key], value, rtol=1e-12, atol=1e-12)


def test_even_counts_and_bad_resize() -> None:
    from deepflow.virtual.torch_runtime import even_counts

    assert even_counts(8, 3) == (3, 3, 2)
    assert sum(even_counts(13, 5)) == 13
    with pytest.raises(ValueError, match="start at step 0"):
        train_virtual_nodes(
            make_model, make_optimizer, loss, batch, virtual_nodes=V, steps=2, resize=[(1, 2)]
        )
    with pytest.raises(ValueError, match="sum to 8"):
        train_virtual_nodes(
            make_model, make_optimizer, loss, batch, virtual_nodes=V, steps=2, resize=[(0, (4, 3))]
        )
