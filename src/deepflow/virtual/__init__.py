"""Virtual nodes (VirtualFlow, Or et al., MLSys 2022, arXiv 2009.09523): planning for
heterogeneous clusters (:mod:`~deepflow.virtual.hetero`), job completion time on elastic
ones (:mod:`~deepflow.virtual.elastic`), and a PyTorch runtime whose update does not depend
on the number of workers (:mod:`~deepflow.virtual.torch_runtime`, the ``torch`` extra;
imported on use, not here)."""

from deepflow.virtual.elastic import ElasticJob, ElasticResult, StepModel, elastic_jct
from deepflow.virtual.hetero import Cluster, Plan, Pool, compare, load_cluster, plan

__all__ = [
    "Cluster",
    "ElasticJob",
    "ElasticResult",
    "Plan",
    "Pool",
    "StepModel",
    "compare",
    "elastic_jct",
    "load_cluster",
    "plan",
]
