"""Delta simulation (FlexFlow, arXiv 1807.05358, sec. 5.3): a proposal that changes one op's
config resumes the simulation at that op and gives the full simulation's step time, bit
for bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.search.mcmc import OpSpace
from deepflow.sim.opsim import OpSimulator, data_parallel
from deepflow.specs import system_from
from deepflow.workload.cnn import alexnet, inception_v3, resnet101
from deepflow.workload.rnn import nmt, rnnlm, rnntc

CLUSTER = system_from({"preset": "dgx-v100", "num_accelerators": 16, "accelerators_per_node": 4})
NETWORKS = {
    "alexnet": alexnet,
    "inception-v3": inception_v3,
    "resnet-101": resnet101,
    "rnntc": rnntc,
    "rnnlm": rnnlm,
    "nmt": nmt,
}


def walk(graph, n_dev: int, proposals: int, seed: int, kernel_parallel: bool = False):
    """Proposals of a Metropolis-Hastings-like chain: each redraws one op's config of the
    current strategy (spatial splits with halo transfers, channel splits with gathers,
    any device block), a fifth of them on graphs with parallel branches place a whole
    branch on a device block (the search's branch move), half of them are accepted, and
    every 97th is a whole random strategy (a restart). ``kernel_parallel`` draws configs
    with CR / RC kernel groups too."""
    space = OpSpace.build(graph, n_dev, kernel_parallel)
    rng = np.random.default_rng(seed)
    current = data_parallel(graph, n_dev)
    yield current
    for k in range(proposals - 1):
        if k % 97 == 96:
            proposal = space.random_strategy(rng)
        elif space.branches and k % 5 == 0:
            proposal = space.propose_branch(current, rng)
        else:
            i = int(rng.integers(len(graph.ops)))
            proposal = (*current[:i], space.random_config(i, rng), *current[i + 1 :])
        yield proposal
        if rng.random() < 0.5:
            current = proposal


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "after-backward"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_delta_equals_full_simulation_on_1000_proposals(name: str, overlap: bool) -> None:
    graph = NETWORKS[name](batch=64)
    delta = OpSimulator(graph, CLUSTER, overlap_sync=overlap)
    full = OpSimulator(graph, CLUSTER, overlap_sync=overlap, delta=False)
    proposals = 1000 if overlap else 200
    halo = 0
    for k, s in enumerate(walk(graph, 16, proposals, seed=len(name))):
        assert delta.step_time(s) == full.step_time(s), (name, k)
        halo += sum(
            any(w.kernel > 1 for e in op.inputs for w in e.windows)
            and (c.degrees[1] > 1 or c.degrees[2] > 1)
            for op, c in zip(graph.ops, s, strict=True)
            if op.kind.value == "conv2d"
        )
    if name in ("inception-v3", "resnet-101", "alexnet"):
        # the walk went through spatially split convolutions that exchange halos
        assert halo > proposals // 4
    assert delta.evaluations == full.evaluations == proposals
    # the equality is not the full simulation's twice: most proposals resumed past op 0
    assert delta.resumed > proposals // 2
    assert delta.skipped_segments > proposals * len(graph.ops) // 8
    assert full.resumed == 0


def test_delta_equals_full_with_branch_moves_on_4_gpus() -> None:
    """The Inception-v3 case study's cluster: walks with whole-branch placements."""
    system = system_from({"preset": "dgx-v100", "num_accelerators": 4, "accelerators_per_node": 4})
    graph = inception_v3(batch=64)
    delta = OpSimulator(graph, system, overlap_sync=False)
    full = OpSimulator(graph, system, overlap_sync=False, delta=False)
    for k, s in enumerate(walk(graph, 4, 300, seed=11)):
        assert delta.search_cost(s) == full.search_cost(s), k
    assert delta.resumed > 100


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    keep=st.integers(1, 4),
    n_dev=st.sampled_from([2, 4, 8]),
)
def test_delta_equals_full_for_any_history(seed: int, keep: int, n_dev: int) -> None:
    """Whatever was simulated before (and however many recent strategies are kept), the
    step time of a strategy is the full simulation's."""
    system = system_from(
        {"preset": "dgx-v100", "num_accelerators": n_dev, "accelerators_per_node": 2}
    )
    graph = nmt(batch=16, seq_len=8, hidden=64, vocab=256, chunk=4)
    delta = OpSimulator(graph, system, delta_keep=keep)
    full = OpSimulator(graph, system, delta=False)
    for s in walk(graph, n_dev, 30, seed):
        assert delta.step_time(s) == full.step_time(s)


def test_repeated_strategy_is_not_resimulated() -> None:
    graph = alexnet(batch=64)
    sim = OpSimulator(graph, CLUSTER)
    dp = data_parallel(graph, 16)
    t = sim.step_time(dp)
    assert sim.step_time(tuple(dp)) == t
    assert sim.skipped_segments == 0 and sim.resumed == 0
    assert sim.evaluations == 2


@pytest.mark.parametrize("name", ["alexnet", "nmt", "rnnlm"])
def test_delta_equals_full_with_kernel_groups(name: str) -> None:
    """Walks through configs with CR / RC kernel groups (partitions on every ``g``-th device,
    tasks on the first of each group): delta simulation still gives the full simulation's
    step time, bit for bit, and resumes past changed kernel splits."""
    graph = NETWORKS[name](batch=64)
    delta = OpSimulator(graph, CLUSTER, check_memory=False)
    full = OpSimulator(graph, CLUSTER, check_memory=False, delta=False)
    proposals = 300
    kernel_configs = 0
    for k, s in enumerate(walk(graph, 16, proposals, seed=7, kernel_parallel=True)):
        kernel_configs += sum(c.kernel is not None for c in s)
        assert delta.step_time(s) == full.step_time(s), (name, k)
    assert kernel_configs > proposals
    assert delta.resumed > proposals // 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), keep=st.integers(1, 4), overlap=st.booleans())
def test_delta_equals_full_with_kernel_groups_for_any_history(
    seed: int, keep: int, overlap: bool
) -> None:
    system = system_from({"preset": "dgx-v100", "num_accelerators": 8, "accelerators_per_node": 4})
    graph = nmt(batch=16, seq_len=8, hidden=64, vocab=256, chunk=4)
    delta = OpSimulator(graph, system, overlap_sync=overlap, delta_keep=keep, delta_stride=2)
    full = OpSimulator(graph, system, overlap_sync=overlap, delta=False)
    for s in walk(graph, 8, 30, seed, kernel_parallel=True):
        assert delta.step_time(s) == full.step_time(s)
        assert delta.search_cost(s) == full.search_cost(s)


def test_search_cost_resumes_like_step_time() -> None:
    """The MCMC search prices proposals with ``search_cost`` (memory penalty, then the step
    time): it goes through delta simulation too, with the full simulation's costs."""
    from deepflow.search.mcmc import mcmc_search

    graph = alexnet(batch=64)
    delta = OpSimulator(graph, CLUSTER)
    full = OpSimulator(graph, CLUSTER, delta=False)
    a = mcmc_search(delta, iterations=200, seed=0, starts={}, min_iterations=200)
    b = mcmc_search(full, iterations=200, seed=0, starts={}, min_iterations=200)
    assert [t.cost for t in a.trace] == [t.cost for t in b.trace]
    assert delta.resumed > 100 and full.resumed == 0
