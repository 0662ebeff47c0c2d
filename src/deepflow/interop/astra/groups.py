"""ASTRA-sim communicator-group JSON and remote-memory JSON.

Communicator groups (reference doc section 2.5): a JSON object mapping a group id, an
integer written as a string, to the list of NPU ids in the group, e.g. ``{"1": [0, 1, 2, 3]}``.
ET nodes name their group in the ``pg_name`` attribute; ``""`` or ``"0"`` means all NPUs.

Remote memory (astra-memory-analytical; reference doc section 2.4): ``memory-type`` and, for
the expansions, ``remote-mem-latency`` (ns) and ``remote-mem-bw`` (GB/s), plus ``num-nodes``
and ``num-npus-per-node`` for ``PER_NODE_MEMORY_EXPANSION``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from deepflow.errors import TraceError
from deepflow.interop.astra._files import integer, number, parse_json_object, read_text

__all__ = [
    "CommGroups",
    "MemoryType",
    "RemoteMemoryConfig",
    "load_comm_groups",
    "load_remote_memory",
    "parse_comm_groups",
    "parse_remote_memory",
]


@dataclass(frozen=True)
class CommGroups:
    """Communicator groups by id; ``groups`` pairs each id with its NPUs in given order."""

    groups: tuple[tuple[str, tuple[int, ...]], ...] = ()
    source: str = field(default="<comm-groups>", compare=False)

    def members(self, pg_name: str, npus: int) -> tuple[int, ...]:
        """NPUs of group ``pg_name``; ``""`` or ``"0"`` is every one of ``npus`` NPUs."""
        if pg_name in ("", "0"):
            return tuple(range(npus))
        for gid, members in self.groups:
            if gid == pg_name:
                return members
        raise TraceError(f"{self.source}: group {pg_name!r} is not defined")


def parse_comm_groups(text: str, source: str = "<comm-groups>") -> CommGroups:
    data = parse_json_object(text, source)
    groups = []
    for gid, members in data.items():
        try:
            int(gid)
        except ValueError:
            raise TraceError(f"{source}: {gid}: a group id must be an integer string") from None
        if not isinstance(members, list) or not members:
            raise TraceError(
                f"{source}: {gid}: expected a non-empty list of NPU ids, found {members!r}"
            )
        npus = tuple(integer(m, source, f"{gid}[{i}]", minimum=0) for i, m in enumerate(members))
        if len(set(npus)) != len(npus):
            raise TraceError(f"{source}: {gid}: an NPU appears twice in the group")
        groups.append((gid, npus))
    return CommGroups(tuple(groups), source)


def load_comm_groups(path: str | os.PathLike[str]) -> CommGroups:
    text, source = read_text(path)
    return parse_comm_groups(text, source)


class MemoryType(str, Enum):
    NO_MEMORY_EXPANSION = "NO_MEMORY_EXPANSION"
    PER_NODE_MEMORY_EXPANSION = "PER_NODE_MEMORY_EXPANSION"
    PER_NPU_MEMORY_EXPANSION = "PER_NPU_MEMORY_EXPANSION"
    MEMORY_POOL = "MEMORY_POOL"


@dataclass(frozen=True)
class RemoteMemoryConfig:
    """Remote memory: latency in s, bandwidth in bytes/s (GB = 1e9 bytes, as local-mem-bw)."""

    memory_type: MemoryType = MemoryType.NO_MEMORY_EXPANSION
    latency_s: float = 0.0
    bandwidth_Bps: float | None = None
    num_nodes: int | None = None
    num_npus_per_node: int | None = None
    source: str = field(default="<remote-memory>", compare=False)


def parse_remote_memory(text: str, source: str = "<remote-memory>") -> RemoteMemoryConfig:
    data = parse_json_object(text, source)
    fields: dict[str, object] = {"source": source}
    for key, value in data.items():
        if key == "memory-type":
            try:
                fields["memory_type"] = MemoryType(value)
            except ValueError:
                allowed = ", ".join(m.value for m in MemoryType)
                raise TraceError(f"{source}: {key}: {value!r} is not one of {allowed}") from None
        elif key == "remote-mem-latency":
            fields["latency_s"] = number(value, source, key, minimum=0) * 1e-9
        elif key == "remote-mem-bw":
            fields["bandwidth_Bps"] = number(value, source, key, minimum=0) * 1e9
        elif key == "num-nodes":
            fields["num_nodes"] = integer(value, source, key, minimum=1)
        elif key == "num-npus-per-node":
            fields["num_npus_per_node"] = integer(value, source, key, minimum=1)
        else:
            raise TraceError(f"{source}: {key}: unknown remote-memory key")
    return RemoteMemoryConfig(**fields)  # type: ignore[arg-type]


def load_remote_memory(path: str | os.PathLike[str]) -> RemoteMemoryConfig:
    text, source = read_text(path)
    return parse_remote_memory(text, source)
