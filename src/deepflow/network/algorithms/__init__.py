"""Collective algorithms: each a schedule for the simulator and a closed form for search.

``ALGORITHMS`` maps each :class:`~deepflow.network.ops.Algorithm` with a flat (one-level)
implementation to an instance; :class:`Hierarchical` is built per network shape.
"""

from deepflow.network.algorithms.base import (
    CollectiveAlgorithm,
    bandwidth_bound,
    pipelined,
)
from deepflow.network.algorithms.direct import Direct
from deepflow.network.algorithms.double_binary_tree import DoubleBinaryTree, double_tree
from deepflow.network.algorithms.halving_doubling import HalvingDoubling
from deepflow.network.algorithms.hierarchical import Hierarchical
from deepflow.network.algorithms.in_network import InNetwork
from deepflow.network.algorithms.ring import Ring
from deepflow.network.ops import Algorithm

ALGORITHMS: dict[Algorithm, CollectiveAlgorithm] = {
    Algorithm.RING: Ring(),
    Algorithm.DIRECT: Direct(),
    Algorithm.HALVING_DOUBLING: HalvingDoubling(),
    Algorithm.TREE: DoubleBinaryTree(),
    Algorithm.IN_NETWORK: InNetwork(),
}

__all__ = [
    "ALGORITHMS",
    "CollectiveAlgorithm",
    "Direct",
    "DoubleBinaryTree",
    "HalvingDoubling",
    "Hierarchical",
    "InNetwork",
    "Ring",
    "bandwidth_bound",
    "double_tree",
    "pipelined",
]
