"""deepflow.interop layer (see docs/DESIGN.md): the formats deepflow exchanges with other
tools.

* :mod:`deepflow.interop.chakra` - Chakra execution traces: typed objects, protobuf reader
  and writer (byte-identical round trip), checks;
* :mod:`deepflow.interop.msccl` - MSCCL-IR collective algorithms: parsing, per-rank
  schedules, symbolic verification, conversion to per-rank ETs;
* :mod:`deepflow.interop.astra` - ASTRA-sim configurations in SI units and a replay of
  per-rank ETs with ASTRA-sim's analytical semantics.
"""
