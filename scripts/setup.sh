#!/usr/bin/env bash
# One-command set-up: a virtual environment (.venv, or $VENV) with fasdl and its dev tools.
#
# Every package is pinned by constraints.txt (`make constraints` regenerates it), torch to its
# CPU build: a bare `torch` from PyPI pulls several GB of CUDA packages. Running it again on an
# existing environment brings it back in line with pyproject.toml and constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "fasdl needs Python >= 3.11 (found $("$PYTHON" --version))" >&2
    exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if ! "$VENV/bin/pip" install -q -c constraints.txt -e '.[dev]'; then
    echo "setup failed. If pip could not find torch's CPU build (torch==…+cpu on Linux), let it" >&2
    echo "see PyTorch's CPU wheel index: PIP_EXTRA_INDEX_URL=<that index> make setup" >&2
    exit 1
fi
"$VENV/bin/python" -c '
import torch, fasdl
assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build"
print(f"fasdl ready: torch {torch.__version__}, {torch.get_num_threads()} threads")
'
# The Makefile's targets depend on this file: it is newer than pyproject.toml and
# constraints.txt once they are installed, so `make test` sets up again only when they change.
touch "$VENV/bin/fasdl"
