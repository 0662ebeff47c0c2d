"""MSCCL-IR: the XML form of a collective algorithm, parsed into frozen objects.

MSCCLang's compiler (microsoft/msccl-tools, ``msccl/language/ir.py``, ``ir_to_xml``) writes
the format and the MSCCL runtime (microsoft/msccl, ``src/graph/topo.cc``) reads it::

    <algo name proto nchannels nchunksperloop ngpus coll inplace [outofplace minBytes ...]>
      <gpu id i_chunks o_chunks s_chunks>
        <tb id send recv chan>
          <step s type srcbuf srcoff dstbuf dstoff cnt depid deps hasdep/>

A ``<gpu>`` is a rank; its ``i``/``o``/``s`` buffers hold ``i_chunks``/``o_chunks``/``s_chunks``
chunks. A ``<tb>`` (threadblock) is a sequential program that sends to one peer and receives
from one peer on channel ``chan``. Steps run in program order; ``depid``/``deps`` add one
dependency on step ``deps`` of threadblock ``depid`` of the same GPU. See reference doc
section 3 for every attribute and step type.

Parsing checks the structure once (unknown step types, ids out of range, a receive on a
threadblock with no receive peer, ...) and raises :class:`~deepflow.errors.TraceError`
naming the file, the gpu/tb/step and the problem.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from enum import Enum

from deepflow.errors import TraceError
from deepflow.specs.files import MAX_CONFIG_BYTES, brief, read_text

__all__ = [
    "Buffer",
    "Gpu",
    "MscclAlgorithm",
    "MscclCollective",
    "Step",
    "StepType",
    "Threadblock",
    "parse_msccl",
    "read_msccl",
]


class MscclCollective(str, Enum):
    """``<algo coll=...>``."""

    ALLREDUCE = "allreduce"
    ALLGATHER = "allgather"
    REDUCE = "reduce"
    BROADCAST = "broadcast"
    ALLTOALL = "alltoall"
    REDUCE_SCATTER = "reduce_scatter"
    CUSTOM = "custom"


class Buffer(str, Enum):
    """``srcbuf``/``dstbuf``: the input, output or scratch buffer of a GPU."""

    INPUT = "i"
    OUTPUT = "o"
    SCRATCH = "s"


class StepType(str, Enum):
    """``<step type=...>``: what a step does (reference doc section 3, "Step types")."""

    SEND = "s"
    RECV = "r"
    RECV_REDUCE_COPY = "rrc"
    RECV_REDUCE_SEND = "rrs"
    RECV_REDUCE_COPY_SEND = "rrcs"
    RECV_COPY_SEND = "rcs"
    COPY = "cpy"
    REDUCE = "re"
    NOP = "nop"

    @property
    def receives(self) -> bool:
        return self in _RECEIVES

    @property
    def sends(self) -> bool:
        return self in _SENDS

    @property
    def reduces(self) -> bool:
        """Combines two chunks with the reduction operator (remote+local or local+local)."""
        return self in _REDUCES


_RECEIVES = frozenset(
    {
        StepType.RECV,
        StepType.RECV_REDUCE_COPY,
        StepType.RECV_REDUCE_SEND,
        StepType.RECV_REDUCE_COPY_SEND,
        StepType.RECV_COPY_SEND,
    }
)
_SENDS = frozenset(
    {
        StepType.SEND,
        StepType.RECV_REDUCE_SEND,
        StepType.RECV_REDUCE_COPY_SEND,
        StepType.RECV_COPY_SEND,
    }
)
_REDUCES = frozenset(
    {
        StepType.RECV_REDUCE_COPY,
        StepType.RECV_REDUCE_SEND,
        StepType.RECV_REDUCE_COPY_SEND,
        StepType.REDUCE,
    }
)


@dataclass(frozen=True)
class Step:
    """One ``<step>``. ``depid``/``deps`` are -1 when the step has no extra dependency."""

    index: int
    type: StepType
    srcbuf: Buffer
    srcoff: int
    dstbuf: Buffer
    dstoff: int
    cnt: int
    depid: int = -1
    deps: int = -1
    hasdep: bool = False


@dataclass(frozen=True)
class Threadblock:
    """One ``<tb>``: its peers (-1 for none), channel and steps in program order."""

    id: int
    send: int
    recv: int
    chan: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Gpu:
    """One ``<gpu>`` (a rank) with its buffer sizes in chunks and its threadblocks."""

    id: int
    i_chunks: int
    o_chunks: int
    s_chunks: int
    threadblocks: tuple[Threadblock, ...]

    def threadblock(self, tb_id: int) -> Threadblock:
        for tb in self.threadblocks:
            if tb.id == tb_id:
                return tb
        raise KeyError(tb_id)


@dataclass(frozen=True)
class MscclAlgorithm:
    """A parsed MSCCL-IR algorithm. ``xml`` keeps the source text (Chakra converters embed
    it in the ET metadata); ``source`` names the file for messages."""

    name: str
    proto: str
    nchannels: int
    nchunksperloop: int
    ngpus: int
    coll: MscclCollective
    inplace: bool
    gpus: tuple[Gpu, ...]
    min_bytes: int | None = None
    max_bytes: int | None = None
    xml: str = field(default="", repr=False, compare=False)
    source: str = field(default="<msccl-ir>", compare=False)

    def gpu(self, rank: int) -> Gpu:
        return self.gpus[rank]


_ALGO_REQUIRED = ("name", "proto", "nchannels", "nchunksperloop", "ngpus", "coll", "inplace")
_ALGO_OPTIONAL = ("outofplace", "minBytes", "maxBytes", "nthreads", "redop")
_GPU_KEYS = ("id", "i_chunks", "o_chunks", "s_chunks")
_TB_KEYS = ("id", "send", "recv", "chan")
_STEP_REQUIRED = ("s", "type", "srcbuf", "srcoff", "dstbuf", "dstoff", "cnt")
_STEP_OPTIONAL = ("depid", "deps", "hasdep")


class _Ctx:
    """Where in the file the parser is, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, problem: str) -> TraceError:
        return TraceError(
            f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}"
        )

    def attrs(
        self,
        elem: ET.Element,
        where: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> None:
        for key in required:
            if key not in elem.attrib:
                raise self.error(where, f"missing attribute {key!r}")
        for key in elem.attrib:
            if key not in required and key not in optional:
                raise self.error(where, f"unknown attribute {key!r}")

    def int(self, elem: ET.Element, key: str, where: str, default: int | None = None) -> int:
        raw = elem.attrib.get(key)
        if raw is None:
            if default is None:
                raise self.error(where, f"missing attribute {key!r}")
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(
                where, f"attribute {key!r} = {brief(raw)} is not an integer"
            ) from None
        # the MSCCL runtime reads every attribute into a C int (msccl src/graph/topo.cc)
        if not -(2**31) <= value < 2**31:
            raise self.error(where, f"attribute {key!r} = {value} is outside a 32-bit integer")
        return value

    def enum(self, enum_cls, elem: ET.Element, key: str, where: str):  # type: ignore[no-untyped-def]
        raw = elem.attrib[key]
        try:
            return enum_cls(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in enum_cls)
            raise self.error(where, f"{key}={raw!r} is not one of {allowed}") from None


def _children(ctx: _Ctx, elem: ET.Element, tag: str, where: str) -> list[ET.Element]:
    out = []
    for child in elem:
        if child.tag != tag:
            raise ctx.error(where, f"unexpected element <{child.tag}> (expected <{tag}>)")
        out.append(child)
    return out


def _parse_step(ctx: _Ctx, elem: ET.Element, where: str) -> Step:
    ctx.attrs(elem, where, _STEP_REQUIRED, _STEP_OPTIONAL)
    return Step(
        index=ctx.int(elem, "s", where),
        type=ctx.enum(StepType, elem, "type", where),
        srcbuf=ctx.enum(Buffer, elem, "srcbuf", where),
        srcoff=ctx.int(elem, "srcoff", where),
        dstbuf=ctx.enum(Buffer, elem, "dstbuf", where),
        dstoff=ctx.int(elem, "dstoff", where),
        cnt=ctx.int(elem, "cnt", where),
        depid=ctx.int(elem, "depid", where, default=-1),
        deps=ctx.int(elem, "deps", where, default=-1),
        hasdep=ctx.int(elem, "hasdep", where, default=0) != 0,
    )


def _parse_tb(ctx: _Ctx, elem: ET.Element, gpu_id: int, ngpus: int) -> Threadblock:
    ctx.attrs(elem, f"gpu {gpu_id}, <tb>", _TB_KEYS)
    tb_id = ctx.int(elem, "id", f"gpu {gpu_id}, <tb>")
    where = f"gpu {gpu_id}, tb {tb_id}"
    send, recv = ctx.int(elem, "send", where), ctx.int(elem, "recv", where)
    for key, peer in (("send", send), ("recv", recv)):
        if peer == gpu_id:
            raise ctx.error(where, f"{key} peer is the GPU itself")
        if not -1 <= peer < ngpus:
            raise ctx.error(where, f"{key}={peer} is not a rank in 0..{ngpus - 1} (or -1)")
    steps = []
    for i, step_elem in enumerate(_children(ctx, elem, "step", where)):
        step = _parse_step(ctx, step_elem, f"{where}, step #{i}")
        swhere = f"{where}, step {step.index}"
        if step.index != i:
            raise ctx.error(swhere, f"steps must be numbered 0, 1, 2, ... (expected s={i})")
        if step.type.sends and send < 0:
            raise ctx.error(swhere, f"step type {step.type.value!r} sends, but the tb has send=-1")
        if step.type.receives and recv < 0:
            raise ctx.error(
                swhere, f"step type {step.type.value!r} receives, but the tb has recv=-1"
            )
        if step.type is not StepType.NOP and step.cnt < 1:
            raise ctx.error(swhere, f"cnt={step.cnt} must be >= 1")
        steps.append(step)
    return Threadblock(tb_id, send, recv, ctx.int(elem, "chan", where), tuple(steps))


def _check_deps(ctx: _Ctx, gpu: Gpu) -> None:
    tbs = {tb.id: tb for tb in gpu.threadblocks}
    if len(tbs) != len(gpu.threadblocks):
        raise ctx.error(f"gpu {gpu.id}", "duplicate threadblock id")
    for tb in gpu.threadblocks:
        for step in tb.steps:
            if step.depid < 0:
                continue
            where = f"gpu {gpu.id}, tb {tb.id}, step {step.index}"
            target = tbs.get(step.depid)
            if target is None:
                raise ctx.error(where, f"depid={step.depid} names no threadblock of this gpu")
            if not 0 <= step.deps < len(target.steps):
                raise ctx.error(
                    where,
                    f"deps={step.deps} names no step of tb {step.depid} "
                    f"(it has {len(target.steps)})",
                )


def parse_msccl(text: str, source: str = "<msccl-ir>") -> MscclAlgorithm:
    """Parse MSCCL-IR XML text."""
    ctx = _Ctx(source)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ctx.error("", f"not well-formed XML: {exc}") from None
    if root.tag != "algo":
        raise ctx.error("", f"root element is <{root.tag}>, expected <algo>")
    ctx.attrs(root, "<algo>", _ALGO_REQUIRED, _ALGO_OPTIONAL)
    ngpus = ctx.int(root, "ngpus", "<algo>")
    for key in ("ngpus", "nchannels", "nchunksperloop"):
        if ctx.int(root, key, "<algo>") < 1:
            raise ctx.error("<algo>", f"{key}={root.attrib[key]} must be >= 1")
    gpu_elems = _children(ctx, root, "gpu", "<algo>")
    if len(gpu_elems) != ngpus:
        # checked before anything sized by ngpus is built
        raise ctx.error("<algo>", f"ngpus={ngpus} but the file has {len(gpu_elems)} <gpu> elements")
    gpus = []
    for elem in gpu_elems:
        ctx.attrs(elem, "<gpu>", _GPU_KEYS)
        gpu_id = ctx.int(elem, "id", "<gpu>")
        where = f"gpu {gpu_id}"
        tbs = tuple(_parse_tb(ctx, e, gpu_id, ngpus) for e in _children(ctx, elem, "tb", where))
        gpu = Gpu(
            gpu_id,
            ctx.int(elem, "i_chunks", where),
            ctx.int(elem, "o_chunks", where),
            ctx.int(elem, "s_chunks", where),
            tbs,
        )
        _check_deps(ctx, gpu)
        gpus.append(gpu)
    ids = [g.id for g in gpus]
    if sorted(ids) != list(range(ngpus)):
        raise ctx.error("<algo>", f"ngpus={ngpus} but the <gpu> ids are {sorted(ids)}")
    gpus.sort(key=lambda g: g.id)
    min_bytes = root.attrib.get("minBytes")
    max_bytes = root.attrib.get("maxBytes")
    return MscclAlgorithm(
        name=root.attrib["name"],
        proto=root.attrib["proto"],
        nchannels=ctx.int(root, "nchannels", "<algo>"),
        nchunksperloop=ctx.int(root, "nchunksperloop", "<algo>"),
        ngpus=ngpus,
        coll=ctx.enum(MscclCollective, root, "coll", "<algo>"),
        inplace=ctx.int(root, "inplace", "<algo>") != 0,
        gpus=tuple(gpus),
        min_bytes=None if min_bytes is None else ctx.int(root, "minBytes", "<algo>"),
        max_bytes=None if max_bytes is None else ctx.int(root, "maxBytes", "<algo>"),
        xml=text,
        source=source,
    )


def read_msccl(path: str | os.PathLike[str]) -> MscclAlgorithm:
    """Read an MSCCL-IR XML file."""
    source = os.fspath(path)
    return parse_msccl(read_text(source, MAX_CONFIG_BYTES, TraceError), source)
