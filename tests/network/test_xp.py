"""The collective cost formulas on NumPy scalars (:mod:`deepflow.network.xp`) give the bits
they give on arrays: the helpers, the ring's closed form through the hierarchy, and the
data-parallel sync of one strategy against the same strategy in a batch of two."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.network.collectives import Collective, collective_time
from deepflow.network.hierarchy import GroupPlacement, Hierarchy, Level
from deepflow.network.xp import asarray, f64, maximum, minimum, select
from deepflow.parallel.sharding import (
    DataParallelGroups,
    scalar_groups,
    sharded_state,
    step_sync,
    sync_time,
)

SPECIAL = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 5e-324, 1e308]
floats = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True))


def same_bits(scalar: object, array: np.ndarray) -> None:
    """``scalar`` is a NumPy float64 scalar holding the one element of ``array``, bit for
    bit (NaN and the sign of zero included)."""
    assert type(scalar) is np.float64
    assert np.asarray(array).size == 1
    assert np.float64(scalar).tobytes() == np.asarray(array, dtype=np.float64).ravel().tobytes()


@given(floats, floats, st.booleans())
def test_helpers_on_scalars_equal_numpy_on_one_element_arrays(a, b, c):
    same_bits(f64(a), np.asarray([a], dtype=np.float64))
    same_bits(f64(np.float64(a)), np.asarray([a], dtype=np.float64))
    same_bits(maximum(np.float64(a), b), np.maximum(np.array([a]), np.array([b])))
    same_bits(maximum(a, np.float64(b)), np.maximum(np.array([a]), np.array([b])))
    same_bits(minimum(np.float64(a), b), np.minimum(np.array([a]), np.array([b])))
    same_bits(minimum(a, np.float64(b)), np.minimum(np.array([a]), np.array([b])))
    same_bits(select(np.bool_(c), np.float64(a), b), np.where(np.array([c]), a, b))
    same_bits(select(c, a, np.float64(b)), np.where(np.array([c]), a, b))


def test_helpers_keep_arrays_arrays():
    a = np.array([1.0, 2.0])
    assert isinstance(f64([1, 2]), np.ndarray) and f64([1, 2]).dtype == np.float64
    assert isinstance(select(a > 1, a, 0.0), np.ndarray)
    assert isinstance(maximum(a, 1.5), np.ndarray)
    assert isinstance(minimum(a, 1.5), np.ndarray)
    assert isinstance(asarray([1, 2]), np.ndarray) and asarray([1, 2]).dtype.kind == "i"
    # a NumPy scalar stays that scalar, its dtype kept
    assert type(asarray(np.int64(3))) is np.int64 and type(asarray(np.bool_(True))) is np.bool_
    # integer branches keep NumPy's integer result
    assert select(True, 1, 2) == 1 and np.asarray(select(True, 1, 2)).dtype.kind == "i"


levels = st.builds(
    Level,
    name=st.just("level"),
    bandwidth=st.floats(1e6, 1e13),
    latency=st.floats(0.0, 1e-4),
    efficiency=st.floats(0.1, 1.0),
)
hierarchies = st.builds(
    Hierarchy, scale_up=levels, scale_out=levels, scale_up_size=st.sampled_from([1, 4, 8, 72])
)
sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e12))
counts = st.sampled_from([1.0, 2.0, 3.0, 8.0, 64.0, 1024.0])


@settings(max_examples=200, deadline=None)
@given(hierarchies, sizes, counts, counts, counts, st.sampled_from(list(Collective)))
def test_collective_time_on_scalars_equals_arrays(hierarchy, size, n, m, k, op):
    arrays = GroupPlacement(np.array([n]), np.array([m]), np.array([k]))
    scalars = GroupPlacement(np.float64(n), np.float64(m), np.float64(k))
    expected = collective_time(op, np.array([size]), arrays, hierarchy)
    got = collective_time(op, np.float64(size), scalars, hierarchy)
    same_bits(np.float64(got), expected)


@settings(max_examples=200, deadline=None)
@given(hierarchies, sizes, counts, counts, counts, st.sampled_from(list(Collective)))
def test_one_element_collective_equals_its_element_in_a_batch(hierarchy, size, n, m, k, op):
    """One strategy (one-element arrays, or a float size) runs on NumPy scalars and comes
    back as a one-element float64 array with the bits of the same strategy in a batch of
    two (arrays all the way)."""
    one = GroupPlacement(np.array([n]), np.array([m]), np.array([k]))
    two = GroupPlacement(np.array([n, 2.0]), np.array([m, 1.0]), np.array([k, 2.0]))
    batch = collective_time(op, np.array([size, 1e6]), two, hierarchy)
    for given_size in (np.array([size]), size, np.float64(size)):
        got = collective_time(op, given_size, one, hierarchy)
        assert type(got) is np.ndarray and got.shape == (1,) and got.dtype == np.float64
        assert got.tobytes() == batch[:1].tobytes()


def _dp_groups(degrees: list[int], n: int) -> DataParallelGroups:
    """Data-parallel groups of ``n`` strategies, each group of degree ``d`` on ``d`` nodes."""
    return DataParallelGroups(
        *(GroupPlacement(np.full(n, d), np.full(n, 1.0), np.full(n, d)) for d in degrees)
    )


@settings(max_examples=200, deadline=None)
@given(
    hierarchies,
    st.floats(0.0, 1e11),
    st.floats(0.0, 1e11),
    st.integers(0, 3),
    st.lists(counts, min_size=7, max_size=7),
    st.sampled_from([None, "backward", "forward", "after_backward"]),
)
def test_sync_time_of_one_strategy_equals_its_element_in_a_batch(
    hierarchy, params, experts, zero, degrees, phase
):
    def total(n: int) -> np.ndarray:
        g = _dp_groups(degrees, n)
        colls = step_sync(np.full(n, params), np.full(n, experts), np.full(n, zero), g, 2.0, 4.0)
        return sync_time(colls, g, hierarchy, phase=phase)

    one, two = total(1), total(2)
    if two.shape == ():  # no collective of that phase: the zero of no shape both ways
        assert one.shape == () and one == 0.0
        return
    assert one.shape == (1,) and one.dtype == np.float64
    assert one.tobytes() == two[:1].tobytes()


@settings(max_examples=200, deadline=None)
@given(
    hierarchies,
    st.floats(0.0, 1e11),
    st.floats(0.0, 1e11),
    st.integers(0, 3),
    st.lists(counts, min_size=7, max_size=7),
    st.sampled_from([None, "backward", "forward", "after_backward"]),
    st.sampled_from([1, 2, 3]),
)
def test_step_sync_on_scalar_groups_equals_one_element_arrays(
    hierarchy, params, experts, zero, degrees, phase, level
):
    """One strategy's volumes, sync time and sharded state with its groups as NumPy scalars
    (:func:`scalar_groups`, the estimator's step-level terms) equal the one-element-array
    path bit for bit, and stay scalars."""
    arrays = _dp_groups(degrees, 1)
    scalars = scalar_groups(arrays)
    p, e, z = np.float64(params), np.float64(experts), np.int64(zero)
    one = step_sync(p, e, z, scalars, np.float64(2.0), np.float64(4.0))
    ref = step_sync(np.full(1, params), np.full(1, experts), np.full(1, zero), arrays, 2.0, 4.0)
    for a, b in zip(one, ref, strict=True):
        same_bits(a.size, b.size)
    got = sync_time(one, scalars, hierarchy, phase=phase)
    expected = sync_time(ref, arrays, hierarchy, phase=phase)
    if np.shape(expected) == ():  # no collective of that phase: zero both ways
        assert got == 0.0 and expected == 0.0
    else:
        same_bits(got, expected)
    same_bits(
        sharded_state(p, e, z, level, scalars),
        sharded_state(np.full(1, params), np.full(1, experts), np.full(1, zero), level, arrays),
    )
