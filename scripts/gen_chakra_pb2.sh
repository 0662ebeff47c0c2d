#!/usr/bin/env bash
# Regenerate src/deepflow/interop/chakra/et_def_pb2.py from et_def.proto next to it.
#
# Dev-time only; grpcio-tools is not a runtime dependency. The committed module is generated
# with grpcio-tools 1.62.3, which bundles protoc 25.x: its output carries no runtime-version
# guard and loads on every protobuf runtime from 4.25 (the floor in pyproject.toml) up to the
# current major. Newer grpcio-tools emit a guard that demands a runtime at least as new as
# their protoc, which would raise that floor.
#
# Usage: scripts/gen_chakra_pb2.sh            (builds a throwaway venv with the pinned tool)
#        PYTHON=/path/to/python scripts/gen_chakra_pb2.sh   (a Python that has the pin)
set -euo pipefail
cd "$(dirname "$0")/.."

GRPC_TOOLS_VERSION="1.62.3"
OUT_DIR="src/deepflow/interop/chakra"

if [[ -z "${PYTHON:-}" ]]; then
    venv="$(mktemp -d)"
    trap 'rm -rf "$venv"' EXIT
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q "grpcio-tools==${GRPC_TOOLS_VERSION}"
    PYTHON="$venv/bin/python"
fi

found="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))')"
if [[ "$found" != "$GRPC_TOOLS_VERSION" ]]; then
    echo "gen_chakra_pb2.sh: need grpcio-tools==${GRPC_TOOLS_VERSION}, found ${found}" >&2
    exit 1
fi

"$PYTHON" -m grpc_tools.protoc \
    --proto_path="$OUT_DIR" \
    --python_out="$OUT_DIR" \
    "$OUT_DIR/et_def.proto"
echo "wrote $OUT_DIR/et_def_pb2.py"
