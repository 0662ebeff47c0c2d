"""The collective operations and the algorithm names (enums shared by the layer)."""

from __future__ import annotations

from enum import Enum


class Collective(str, Enum):
    """A collective operation (the Chakra ``CollectiveCommType`` subset deepflow models).

    Size convention, everywhere in this package: ``size`` is the full buffer of one rank,
    the vector being all-reduced, the input of a reduce-scatter, the gathered output of an
    all-gather, the bytes a rank holds before an all-to-all, the broadcast/reduced buffer.
    """

    ALL_REDUCE = "all-reduce"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_GATHER = "all-gather"
    ALL_TO_ALL = "all-to-all"
    BROADCAST = "broadcast"
    REDUCE = "reduce"


class Algorithm(str, Enum):
    """Collective algorithms. ``TREE`` is NCCL's name for the double binary tree."""

    RING = "ring"
    DIRECT = "direct"
    HALVING_DOUBLING = "halving-doubling"
    TREE = "tree"
    HIERARCHICAL = "hierarchical"
    IN_NETWORK = "in-network"

    @classmethod
    def parse(cls, value: str) -> Algorithm:
        aliases = {
            "double-binary-tree": cls.TREE,
            "dbt": cls.TREE,
            "hd": cls.HALVING_DOUBLING,
            "nvls": cls.IN_NETWORK,
            "sharp": cls.IN_NETWORK,
        }
        key = value.strip().lower().replace("_", "-")
        return aliases.get(key) or cls(key)
