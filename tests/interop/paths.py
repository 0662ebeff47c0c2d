"""Paths of the fixture files the interop tests read (tests/fixtures; see the READMEs
there)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ASTRA = FIXTURES / "astra-sim"
MSCCL = FIXTURES / "msccl"
CUSTOM_DIR = ASTRA / "examples/system/custom_collectives/custom_ring_allreduce_8npus_1MB"
CUSTOM_PREFIX = CUSTOM_DIR / "custom_allreduce"
MICROBENCH = ASTRA / "examples/workload/microbenchmarks"
RT = ASTRA / "tests/rt_template"
MSCCL_XMLS = [*sorted(MSCCL.glob("*.xml")), CUSTOM_DIR / "custom_allreduce.xml"]
