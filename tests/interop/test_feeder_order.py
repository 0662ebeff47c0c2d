""":class:`deepflow.interop.astra.feeder_order.CxxHashSet` iterates as GNU libstdc++'s
``std::unordered_set<uint64_t>`` does: checked against the real container, compiled here
when a C++ compiler is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.interop.astra.feeder_order import CxxHashSet, FeederOrder

_PROGRAM = r"""
#include <cstdint>
#include <iostream>
#include <string>
#include <unordered_set>
int main() {
  std::unordered_set<uint64_t> s;
  std::string op;
  uint64_t k;
  while (std::cin >> op) {
    if (op == "a") { std::cin >> k; s.insert(k); }
    else if (op == "e") { std::cin >> k; s.erase(k); }
    else { const auto copy = s; for (auto x : copy) std::cout << x << ' '; std::cout << "|\n"; }
  }
}
"""


@pytest.fixture(scope="module")
def libstdcxx_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++ to build the reference std::unordered_set")
    folder = tmp_path_factory.mktemp("cxx")
    (folder / "set.cpp").write_text(_PROGRAM)
    subprocess.run([cxx, "-O1", "-o", str(folder / "set"), str(folder / "set.cpp")], check=True)
    return folder / "set"


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("a"), st.integers(0, 700)),
        st.tuples(st.just("e"), st.integers(0, 700)),
        st.tuples(st.just("p"), st.just(0)),
    ),
    max_size=900,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPS)
def test_iteration_order_is_libstdcxx(libstdcxx_set: Path, ops) -> None:  # type: ignore[no-untyped-def]
    s = CxxHashSet()
    expected = []
    lines = []
    for op, key in [*ops, ("p", 0)]:
        if op == "a":
            s.add(key)
            lines.append(f"a {key}")
        elif op == "e":
            s.discard(key)
            lines.append(f"e {key}")
        else:
            expected.append("".join(f"{x} " for x in s) + "|")
            lines.append("p")
    out = subprocess.run(
        [str(libstdcxx_set)], input="\n".join(lines), capture_output=True, text=True, check=True
    ).stdout.split("\n")[:-1]
    assert out == expected


def test_known_orders() -> None:
    """13 buckets until the 14th element: ids in distinct buckets come newest first;
    the rehash to 29 buckets reverses the list."""
    assert list(CxxHashSet([1, 2, 3])) == [3, 2, 1]
    assert list(CxxHashSet([0, 13, 1])) == [1, 13, 0]
    assert list(CxxHashSet(range(14))) == [13, *range(13)]
    s = CxxHashSet([5, 7])
    s.discard(7)
    assert list(s) == [5] and 7 not in s and len(s) == 1


def test_feeder_issues_in_set_order() -> None:
    """The child-to-parents map holds 3, 2, 1, 0 (newest first), so the free set is
    filled with 2, 1, 0 and iterates 0, 1, 2; a child freed by its last parent joins it."""
    order = FeederOrder([(0, ()), (1, ()), (2, ()), (3, (0, 1))])
    assert list(order.child_map_parent.keys) == [3, 2, 1, 0]
    assert order.take_all() == [0, 1, 2]
    order.finish(0)
    assert order.take_all() == []
    order.finish(1)
    assert order.take_all() == [3]
