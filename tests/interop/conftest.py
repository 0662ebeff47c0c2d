"""Fixtures shared by the interop tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

# fixture files (tests/fixtures; see the READMEs there)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ASTRA = FIXTURES / "astra-sim"
MSCCL = FIXTURES / "msccl"
CUSTOM_DIR = ASTRA / "examples/system/custom_collectives/custom_ring_allreduce_8npus_1MB"
CUSTOM_PREFIX = CUSTOM_DIR / "custom_allreduce"
MICROBENCH = ASTRA / "examples/workload/microbenchmarks"
RT = ASTRA / "tests/rt_template"
MSCCL_XMLS = [*sorted(MSCCL.glob("*.xml")), CUSTOM_DIR / "custom_allreduce.xml"]


@pytest.fixture(scope="session")
def pytorch_et(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chakra's PyTorch-derived trace ``chakra.0.et``, extracted from its archive."""
    out = tmp_path_factory.mktemp("chakra")
    with tarfile.open(FIXTURES / "chakra/feeder_tests_trace.tar.gz") as tar:
        member = tar.getmember("tests/data/chakra.0.et")
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    path = out / "chakra.0.et"
    path.write_bytes(data)
    return path
