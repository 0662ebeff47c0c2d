"""System specs: a cluster of identical nodes joined by a two-level network."""

from __future__ import annotations

from pydantic import Field, model_validator

from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.specs.base import Bandwidth, Degree, Fraction, Name, Seconds, Sources, Spec


class LinkSpec(Spec):
    """One level of the network: bandwidth per accelerator per direction, latency, and the
    fraction of the bandwidth that collectives reach (``efficiency``, measured bus bandwidth
    over link bandwidth, with its ``efficiency_source``)."""

    bandwidth: Bandwidth
    latency: Seconds = 0.0
    efficiency: Fraction = 1.0
    efficiency_source: str = ""


class SystemSpec(Spec):
    """A cluster: ``num_accelerators`` accelerators in nodes of ``accelerators_per_node``.

    ``intra_node`` is the scale-up fabric (NVLink/NVSwitch, TPU ICI); ``inter_node`` is the
    scale-out network (one NIC's share per accelerator). ``scale_up_size`` is how many
    accelerators share the scale-up fabric (a node, an NVL72 rack, a TPU slice); it defaults
    to ``accelerators_per_node``.
    """

    name: Name = "custom"
    accelerator: AcceleratorSpec
    num_accelerators: Degree
    accelerators_per_node: Degree
    scale_up_size: Degree
    intra_node: LinkSpec
    inter_node: LinkSpec
    price_per_accelerator_hour: float = Field(default=0.0, ge=0)
    sources: Sources

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        if isinstance(data, dict):
            data = dict(data)
            if "accelerators_per_node" in data:
                data.setdefault("num_accelerators", data["accelerators_per_node"])
                data.setdefault("scale_up_size", data["accelerators_per_node"])
        return data

    @property
    def num_nodes(self) -> int:
        return -(-self.num_accelerators // self.accelerators_per_node)
