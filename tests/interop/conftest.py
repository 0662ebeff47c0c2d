"""Fixtures shared by the interop tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from tests.interop.paths import FIXTURES


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
