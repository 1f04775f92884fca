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
# Chromium, in which the tests open a job's report.html (tests/integration/test_reports.py):
# installed when we are root on a Debian-like system, otherwise the way to install it is shown.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${FASDL_CHROMIUM:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Chromium (apt-get install chromium) for the report tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "Chromium is missing: the report tests need it. Install it with" >&2
        echo "  sudo apt-get install -y --no-install-recommends chromium   (Debian, Ubuntu)" >&2
        echo "or set FASDL_CHROMIUM to a Chromium or Chrome binary." >&2
    fi
fi
# The Makefile's targets depend on this file: it is newer than pyproject.toml and
# constraints.txt once they are installed, so `make test` sets up again only when they change.
touch "$VENV/bin/fasdl"
