"""One conformance suite for every executor: the same search gives the same result, bit for
bit, in the calling process, in a process pool and on a Dask cluster; an interrupted
process-pool search resumes from its results file."""

from __future__ import annotations

import functools
import importlib.util

import pytest
from tests.search.helpers import tight, tiny

from deepflow.errors import ConfigError
from deepflow.search import (
    DaskExecutor,
    ProcessExecutor,
    SearchSpace,
    SerialExecutor,
    exhaustive_search,
    make_executor,
)

HAS_DASK = importlib.util.find_spec("distributed") is not None
NO_DASK = "Dask is not installed (optional extra: pip install 'dask[distributed]')"


# a builtin, so spawned workers can unpickle it without importing this test module
SQUARE = functools.partial(pow, exp=2)


def _serial():
    return SerialExecutor()


def _processes():
    return ProcessExecutor(2)


def _dask():
    if not HAS_DASK:
        pytest.skip(NO_DASK)
    return DaskExecutor(workers=2, processes=False)


EXECUTORS = [_serial, _processes, _dask]


def _identity(result):
    return (
        [(c.key, c.step_time_s, c.peak_memory_bytes, c.strategy) for c in result.top],
        [(c.key, c.step_time_s, c.peak_memory_bytes) for c in result.pareto],
        result.infeasible,
        result.evaluated,
    )


@pytest.fixture(scope="module")
def reference():
    spaces = [SearchSpace.from_scenario(tight(), num_accelerators=n) for n in (8, 16)]
    return spaces, exhaustive_search(spaces, top=8, chunk_size=2000)


@pytest.mark.parametrize("build", EXECUTORS, ids=lambda f: f.__name__.strip("_"))
def test_each_item_once_any_order(build):
    executor = build()
    try:
        assert sorted(executor.map_unordered(SQUARE, list(range(20)))) == [i * i for i in range(20)]
    finally:
        executor.close()
        executor.close()  # closing twice is harmless


@pytest.mark.parametrize("build", EXECUTORS, ids=lambda f: f.__name__.strip("_"))
def test_same_result_as_in_process(build, reference):
    spaces, expected = reference
    executor = build()
    try:
        result = exhaustive_search(spaces, top=8, chunk_size=2000, executor=executor)
    finally:
        executor.close()
    assert _identity(result) == _identity(expected)


class _Stop(Exception):
    pass


def test_process_pool_search_resumes_after_an_interruption(tmp_path):
    space = SearchSpace.from_scenario(tiny())
    out = tmp_path / "r.jsonl"
    total = space.num_chunks(1000)

    def stop(done: int, total_: int) -> None:
        if done >= 4:
            raise _Stop

    executor = ProcessExecutor(2)
    try:
        with pytest.raises(_Stop):
            exhaustive_search(space, chunk_size=1000, out=out, executor=executor, on_chunk=stop)
        resumed = exhaustive_search(space, chunk_size=1000, out=out, executor=executor)
    finally:
        executor.close()
    assert resumed.chunks_resumed == 4 and resumed.chunks_evaluated == total - 4
    assert _identity(resumed) == _identity(exhaustive_search(space, chunk_size=1000))


def test_make_executor_picks_by_options():
    assert isinstance(make_executor(1), SerialExecutor)
    pool = make_executor(2)
    try:
        assert isinstance(pool, ProcessExecutor)
    finally:
        pool.close()
    with pytest.raises(ConfigError, match="--workers"):
        make_executor(0)


@pytest.mark.skipif(HAS_DASK, reason="checks the message shown when Dask is missing")
def test_missing_dask_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="dask"):
        DaskExecutor()
