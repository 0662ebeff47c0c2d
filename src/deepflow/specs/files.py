"""Reading and writing user files, bounded, with errors that name the file.

Every reader of user input goes through this module, so that each bound is checked in one
place and before anything is allocated (docs/DESIGN.md, "Infeasible is a result, malformed is
an error"):

=====================  ==============================  ========================================
what                   bound                           why
=====================  ==============================  ========================================
config file (YAML,     :data:`MAX_CONFIG_BYTES` 8 MiB  the largest scenario, cluster or
JSON, XML) bytes                                       calibration file is a few hundred KiB
binary trace bytes     :data:`MAX_TRACE_BYTES`         a Chakra ET of one rank of a 16k-GPU
                       256 MiB                         job is a few MiB
decompressed gzip      :data:`MAX_TRACE_BYTES`         a gzip bomb stops at the bound, read in
                                                       1 MiB pieces
nesting depth          :data:`MAX_DEPTH` 64            Python's parsers recurse; 5,000 levels
                                                       raise ``RecursionError``
expanded YAML/JSON     :data:`MAX_NODES` 200,000       a YAML alias bomb ("billion laughs")
nodes                                                  is small on disk, huge once expanded
text encoding          UTF-8 (with or without BOM)     the encoding the YAML 1.2 and JSON
                                                       (RFC 8259 sec. 8.1) specs require
=====================  ==============================  ========================================

Files are written atomically (:func:`atomic_write`): a temporary file in the destination's
folder, then ``os.replace``, so a failed run never leaves a half-written file, and
:func:`check_output_path` checks the destination before any work starts.

Errors are :class:`~deepflow.errors.ConfigError` by default; readers of traces and collective
algorithms pass ``error=TraceError``. Either way the message is one line: file, rule, value.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deepflow.errors import ConfigError, DeepflowError

T = TypeVar("T")

MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""Largest YAML, JSON or XML file read (8 MiB)."""
MAX_TRACE_BYTES = 256 * 1024 * 1024
"""Largest binary trace read, and largest decompressed gzip stream (256 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (or XML elements) accepted."""
MAX_NODES = 200_000
"""Most values in one YAML or JSON document, counting each alias at its expanded size."""
MAX_SHOWN = 60
"""Longest value quoted in an error message (longer ones are cut with ``...``)."""

_CHUNK = 1024 * 1024


def brief(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages (an expanded alias
    bomb or a 1 MB string would otherwise become the message)."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        text = f"<{type(value).__name__} of {len(value)} items>"
    else:
        try:
            text = repr(value)
        except RecursionError:  # a self-referencing YAML list
            text = f"<recursive {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(error: type[DeepflowError], source: str, message: str) -> DeepflowError:
    if issubclass(error, ConfigError):
        return error(message, source=source)
    return error(f"{source}: {message}")


def read_bytes(
    path: str | os.PathLike[str],
    limit: int = MAX_CONFIG_BYTES,
    error: type[DeepflowError] = ConfigError,
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Devices, pipes and folders are refused before reading (``/dev/zero`` never ends), and the
    read stops at ``limit + 1`` bytes, so a file that grows while read is caught too."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _fail(error, source, "not a regular file (a device, pipe or folder)")
            if info.st_size > limit:
                raise _fail(error, source, _too_big(info.st_size, limit))
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _fail(error, source, f"cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise _fail(error, source, _too_big(len(data), limit))
    return data


def _too_big(size: int, limit: int) -> str:
    return f"file size {size:,} bytes exceeds the limit of {limit:,} bytes"


def gunzip(
    data: bytes, source: str, limit: int = MAX_TRACE_BYTES, error: type[DeepflowError] = ConfigError
) -> bytes:
    """Decompress a gzip stream, stopping with an error once the output passes ``limit``
    bytes (RFC 1952; a gzip bomb expands ~1,000 times)."""
    decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    rest = data
    try:
        while rest:
            out += decomp.decompress(rest, _CHUNK)
            if len(out) > limit:
                raise _fail(
                    error, source, f"decompressed size exceeds the limit of {limit:,} bytes"
                )
            rest = decomp.unconsumed_tail
            if decomp.eof:
                break
        out += decomp.flush()
    except zlib.error as exc:
        raise _fail(error, source, f"corrupt gzip stream: {exc}") from None
    if not decomp.eof:
        raise _fail(error, source, "corrupt gzip stream: truncated")
    if len(out) > limit:
        raise _fail(error, source, f"decompressed size exceeds the limit of {limit:,} bytes")
    return bytes(out)


def decode_text(data: bytes, source: str, error: type[DeepflowError] = ConfigError) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); anything else is an error naming
    the first bad byte and its line."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _fail(error, source, "the file is UTF-16; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fail(
            error,
            source,
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
            "save the file as UTF-8",
        ) from None


def read_text(
    path: str | os.PathLike[str],
    limit: int = MAX_CONFIG_BYTES,
    error: type[DeepflowError] = ConfigError,
) -> str:
    """A bounded UTF-8 text file (:func:`read_bytes` then :func:`decode_text`)."""
    return decode_text(read_bytes(path, limit, error), os.fspath(path), error)


# --- YAML ------------------------------------------------------------------------------------


class _Limit(Exception):
    """A bound passed inside the YAML loader (turned into the caller's error class)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth bound while composing and duplicate keys refused
    (YAML 1.2 sec. 3.2.1.1: the keys of a mapping are unique; PyYAML keeps the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Limit(f"line {mark.line + 1}: nested deeper than the limit of {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                with contextlib.suppress(TypeError):
                    if key in seen:
                        raise _Limit(
                            f"line {key_node.start_mark.line + 1}: duplicate key {brief(key)}"
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Any) -> int:
    """Number of nodes once every alias is expanded; an error past :data:`MAX_NODES` or on
    a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: Any) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Limit(f"line {n.start_mark.line + 1}: an alias refers to itself")
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += size(v)
                if total > MAX_NODES:
                    break
        active.discard(key)
        if total > MAX_NODES:
            raise _Limit(
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)"
            )
        sizes[key] = total
        return total

    return size(node)


def parse_yaml(text: str, source: str, error: type[DeepflowError] = ConfigError) -> Any:
    """One YAML document, bounded in depth and expanded size, with unique keys."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise _fail(error, source, f"not valid YAML: {_one_line(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Limit as exc:
        raise _fail(error, source, f"not accepted as YAML: {exc}") from None
    except yaml.YAMLError as exc:
        raise _fail(error, source, f"not valid YAML: {_one_line(exc)}") from None
    finally:
        loader.dispose()


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# --- JSON ------------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_OPEN = re.compile(r"[\[{]")
_JSON_ANY = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings removed first)."""
    stripped = _JSON_STRING.sub("", text)
    if not _JSON_OPEN.search(stripped):
        return 0
    depth = deepest = 0
    for bracket in _JSON_ANY.findall(stripped):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(text: str, source: str, error: type[DeepflowError] = ConfigError) -> Any:
    """One JSON value, bounded in depth and in the number of values; ``NaN`` and
    ``Infinity`` (not JSON, RFC 8259 sec. 6) are refused."""
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise _fail(error, source, f"not accepted as JSON: nested {depth} levels, the limit is {MAX_DEPTH}")

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    count = 0

    def counted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count += len(pairs) + 1
        if count > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES:,} values")
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {brief(key)}")
            out[key] = value
        return out

    try:
        return json.loads(text, parse_constant=constant, object_pairs_hook=counted)
    except json.JSONDecodeError as exc:
        raise _fail(error, source, f"not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise _fail(error, source, f"not accepted as JSON: {exc}") from None


def parse_config_text(
    text: str, source: str, error: type[DeepflowError] = ConfigError, json_suffix: bool = False
) -> Any:
    """JSON when ``json_suffix``, else YAML (a superset of JSON)."""
    return parse_json(text, source, error) if json_suffix else parse_yaml(text, source, error)


def read_config_data(
    path: str | os.PathLike[str], error: type[DeepflowError] = ConfigError
) -> Any:
    """The parsed content of a bounded YAML or JSON file (JSON by the ``.json`` suffix)."""
    source = os.fspath(path)
    text = read_text(path, MAX_CONFIG_BYTES, error)
    return parse_config_text(text, source, error, Path(source).suffix.lower() == ".json")


def load_config_file(path: str | Path, build: Callable[[object, str], T]) -> T:
    """Read ``path`` (JSON by suffix, else YAML) and ``build(data, name)`` from it.

    ``name`` is the file's stem. Unreadable, oversized or unparsable files, and any
    :class:`ConfigError` raised by ``build``, come out as a ``ConfigError`` attributed to
    the file (``file: key.path: message``).
    """
    path = Path(path)
    data = read_config_data(path)
    try:
        return build(data, path.stem)
    except ConfigError as exc:
        # an error inside a file the config names (a calibration file) keeps that file
        raise (exc if exc.source else exc.with_source(str(path))) from None


# --- writing ---------------------------------------------------------------------------------


def check_output_path(
    path: str | os.PathLike[str], key: str, suffixes: tuple[str, ...] = ()
) -> Path:
    """The destination as a :class:`Path`, after checking, before any work starts, that
    its folder exists and is writable, that it is not a folder, and (when ``suffixes`` is
    given) its suffix. Errors name the option ``key``."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ConfigError(f"{brief(str(p))} is a folder; give a file name", key)
    if p.exists() and not p.is_file():
        # writing through a rename would replace a device node such as /dev/full
        raise ConfigError(f"{brief(str(p))} exists and is not a regular file", key)
    if not folder.is_dir():
        raise ConfigError(f"folder {brief(str(folder))} does not exist", key)
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"folder {brief(str(folder))} is not writable", key)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{brief(str(p))}: the suffix must be one of {', '.join(suffixes)}", key
        )
    return p


def atomic_write(path: str | os.PathLike[str], data: str | bytes, key: str = "") -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace`` (atomic on POSIX): readers see the old file or the whole new one, never a
    part, and a full disk leaves no file behind. Errors are a :class:`ConfigError` naming
    ``key`` (the option that named the file)."""
    p = check_output_path(path, key)
    folder = p.parent if str(p.parent) else Path(".")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise ConfigError(f"cannot write {brief(str(p))}: {exc.strerror}", key) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return p
