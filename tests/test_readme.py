"""The README's Python API section runs as written (its code blocks, in order, in one
namespace, from the repository root)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_three_uses():
    blocks = _python_blocks()
    assert len(blocks) == 3
    assert "deepflow.predict" in blocks[0] and "breakdown_s" in blocks[0]
    assert "deepflow.evaluate" in blocks[2]


def test_the_code_blocks_run(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    for block in _python_blocks():
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "s/step, MFU" in out and "out of memory" in out and "tp=8 pp=" in out
    assert "2 of 6 feasible" in out and "does not divide" in out


def test_first_screen_keeps_exactly_two_commands():
    text = (ROOT / "README.md").read_text("utf-8")
    first = text.split("\n## ", 1)[0]
    assert len(re.findall(r"```bash\n", first)) == 2
    assert "## Python API" not in first


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
