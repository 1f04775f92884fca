#!/usr/bin/env bash
# Regenerate constraints.txt (`make constraints`): install fasdl with its dev tools in a fresh,
# throw-away virtual environment, without the old constraints, check it, and freeze it.
#
# The newest releases pyproject.toml's ranges allow are taken, so run `make setup` (and the
# tests) afterwards, and commit constraints.txt with whatever pyproject.toml change prompted it.
# torch must be the CPU build: a CUDA build (several GB of nvidia-* packages) stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-constraints.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q -e '.[dev]'
"$tmp/venv/bin/python" -c '
import torch, fasdl
assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build"
'
frozen=$("$tmp/venv/bin/pip" freeze --exclude-editable)
if grep -qi '^nvidia-' <<<"$frozen"; then
    echo "a CUDA package was installed; not writing $OUT:" >&2
    grep -i '^nvidia-' <<<"$frozen" >&2
    exit 1
fi
torch_line=$(grep -i '^torch==' <<<"$frozen")
torch_version=${torch_line#*==}
case "$torch_version" in
*+cpu) ;;
*)
    echo "torch resolved to $torch_version, not a +cpu build; not writing $OUT" >&2
    exit 1
    ;;
esac
{
    echo "# Every package of a working fasdl install, pinned; written by scripts/constraints.sh"
    echo "# (make constraints) from a fresh virtual environment on $(uname -s)/$(uname -m),"
    echo "# $("$tmp/venv/bin/python" --version). scripts/setup.sh installs with -c $OUT."
    echo "#"
    echo "# torch: the CPU build on Linux (PyPI's plain Linux wheel is the CUDA one, with GB of"
    echo "# nvidia-* packages); macOS and Windows wheels are CPU-only under the plain version."
    grep -vi '^torch==' <<<"$frozen"
    echo "torch==${torch_version}; sys_platform == \"linux\""
    echo "torch==${torch_version%+cpu}; sys_platform != \"linux\""
} >"$OUT"
echo "wrote $OUT ($(grep -cv '^#' "$OUT") pins, torch $torch_version)"
