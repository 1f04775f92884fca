#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with fasdl and its dev tools.
# torch is pinned to 2.13.0 in pyproject.toml: an open range pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "fasdl needs Python >= 3.11 (found $("$PYTHON" --version))" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/python -c 'import torch, fasdl; print(f"fasdl ready: torch {torch.__version__}, {torch.get_num_threads()} threads")'
