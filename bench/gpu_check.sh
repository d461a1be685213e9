#!/usr/bin/env bash
# Exercise every GPU path of kagent on the example tasks (bench/gpu_check.py says which) and print
# a table: path, PASS/FAIL, seconds, first error line. Exit 1 if any path fails; 0, with one line
# saying so, on a machine without an NVIDIA GPU. At most five minutes on one GPU.
#   bench/gpu_check.sh            # from anywhere; uses the repository's .venv (README: Install)
#   PYTHON=python3 bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
if [ ! -x "$python" ] && ! command -v "$python" >/dev/null; then
    echo "gpu_check: $python not found: install kagent first (README: Install) or set PYTHON" >&2
    exit 2
fi
# load_inline runs `ninja` from PATH: the environment's own, as activating it would.
PATH="$(cd "$(dirname "$(command -v "$python")")" && pwd):$PATH"
export PATH
# The script keeps to its own budget; this is the backstop should a path hang past it.
exec timeout --kill-after=10 360 "$python" bench/gpu_check.py "$@"
