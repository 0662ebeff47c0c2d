"""Double binary tree all-reduce (Sanders, Speck and Träff, "Two-tree algorithms for full
bandwidth broadcast, reduction and scan", Parallel Computing 35(12), 2009; NCCL 2.4's
``tree`` algorithm, whose tree construction ``ncclGetBtree``/``ncclGetDtree`` in
``src/graph/trees.cc`` is reproduced here).

Two binary trees each carry half of the buffer, in ``k`` chunks. The second tree is the
first mirrored (``r -> n-1-r``, even ``n``) or shifted by one (odd ``n``), so most ranks
are inner nodes in one tree and leaves in the other. Chunks are reduced up both trees
(pipelined), then broadcast down them. Both trees have height ``H``, so on a network where
the trees' messages never share a link each phase is a pipelined chain of ``H`` hops
carrying ``S/2`` in ``k`` chunks, with ``B'`` the per-link bandwidth
(:func:`~deepflow.network.algorithms.base.pipelined`; Sanders et al. sec. 2):

    T = 2 (H alpha + (k + H - 1) S / (2 k B'))

A rank's two trees share its port, so per rank bandwidth ``B`` gives ``B' = B/2``: the
reference topology is a full mesh with links of ``B/2``. For large ``k`` this is
``2 S / B``, the bandwidth term NCCL's tuning model uses for its tree. On that mesh a few
small group sizes make one rank's two trees send over the same link at once; the
simulation is then slower than the closed form (``exact_on`` says for which group sizes
the closed form is exact: every even size, where the mirrored tree never reuses a link).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from deepflow.network.algorithms.base import pipelined, unsupported
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule
from deepflow.network.topologies import fully_connected
from deepflow.network.topology import LinkGraph


def btree_parent(n: int, rank: int) -> int:
    """Parent of ``rank`` in NCCL's binary tree over ``n`` ranks (-1 for the root, 0)."""
    if rank == 0:
        return -1
    bit = 1
    while bit < n and not bit & rank:
        bit <<= 1
    up = (rank ^ bit) | (bit << 1)
    return rank ^ bit if up >= n else up


@cache
def double_tree(n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Parent arrays of the two trees (NCCL ``ncclGetDtree``)."""
    first = tuple(btree_parent(n, r) for r in range(n))
    second = []
    for r in range(n):
        if n % 2:
            u = btree_parent(n, (r - 1) % n)
            second.append(-1 if u < 0 else (u + 1) % n)
        else:
            u = btree_parent(n, n - 1 - r)
            second.append(-1 if u < 0 else n - 1 - u)
    return first, tuple(second)


def heights(parent: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Height (longest path down to a leaf) and depth (distance from the root)."""
    n = len(parent)
    depth = [0] * n
    for r in range(n):
        d, x = 0, r
        while parent[x] >= 0:
            x, d = parent[x], d + 1
        depth[r] = d
    height = [0] * n
    for r in sorted(range(n), key=lambda x: -depth[x]):
        if parent[r] >= 0:
            height[parent[r]] = max(height[parent[r]], height[r] + 1)
    return height, depth


def tree_height(n: object) -> np.ndarray:
    """Height of NCCL's binary tree on ``n`` ranks: ``ceil(log2 n)`` (rank 0 has a single
    child, the root of a complete tree on the rest; vectorized)."""
    nn = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    return np.ceil(np.log2(nn))


class DoubleBinaryTree:
    """Double binary tree all-reduce; see the module docstring."""

    name = "double-binary-tree"
    in_network = False

    @staticmethod
    def exact_on(n: int) -> bool:
        """True when no rank is an inner node of both trees (then no link carries two
        messages at once on the reference mesh and the closed form is exact)."""
        if n <= 2:
            return True
        first, second = double_tree(n)
        inner = [set(p for p in tree if p >= 0) for tree in (first, second)]
        return not (inner[0] & inner[1])

    def supports(self, op: Collective, n: int) -> bool:
        return op is Collective.ALL_REDUCE and n >= 1

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        if op is not Collective.ALL_REDUCE:
            raise unsupported(self.name, op)
        k = max(1, int(chunks))
        rounds: list[Round] = []
        if n > 1:
            trees = double_tree(n)
            info = [heights(p) for p in trees]
            top = max(max(h) for h, _ in info)
            for t in range(k + top - 1):  # reduce phase
                src, dst, slot = [], [], []
                for tree, (parent, (height, _)) in enumerate(zip(trees, info, strict=True)):
                    for r in range(n):
                        c = t - height[r]
                        if parent[r] >= 0 and 0 <= c < k:
                            src.append(r), dst.append(parent[r]), slot.append(tree * k + c)
                rounds.append(Round.of(src, dst, slot, slot, 1, True))
            for t in range(k + top - 1):  # broadcast phase
                src, dst, slot = [], [], []
                for tree, (parent, (_, depth)) in enumerate(zip(trees, info, strict=True)):
                    for r in range(n):
                        c = t - (depth[r] - 1)
                        if parent[r] >= 0 and 0 <= c < k:
                            src.append(parent[r]), dst.append(r), slot.append(tree * k + c)
                rounds.append(Round.of(src, dst, slot, slot, 1, False))
            rounds[k + top - 1] = _barrier(rounds[k + top - 1])
        return Schedule(op, n, n, 2 * k, float(size), tuple(rounds))

    def closed_form(
        self,
        op: Collective,
        size: object,
        n: object,
        bandwidth: object,
        latency: object,
        chunks: object = 1,
    ) -> np.ndarray:
        if op is not Collective.ALL_REDUCE:
            raise unsupported(self.name, op)
        s = np.asarray(size, dtype=np.float64)
        nn = np.asarray(n, dtype=np.float64)
        link = np.asarray(bandwidth, dtype=np.float64) / 2.0
        a = np.asarray(latency, dtype=np.float64)
        t = 2.0 * pipelined(tree_height(nn), s / 2.0, link, a, chunks)
        return np.where(nn > 1, t, 0.0)

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return fully_connected(n, bandwidth / 2.0, latency)


def _barrier(first_broadcast: Round) -> Round:
    """The broadcast phase starts when the reduction is complete (see module docstring)."""
    return replace(first_broadcast, barrier=True)
