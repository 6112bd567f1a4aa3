#!/usr/bin/env bash
# Creates (once) and prints the path of the project's Python environment.
#
# The virtualenv lives in a cache directory keyed by the hash of pyproject.toml, the lock file
# and the Python version, so a second run, or a fresh clone on the same machine, costs seconds.
# It holds the dependencies only: the scripts put this checkout's service/ on PYTHONPATH, so
# two checkouts sharing the environment never run each other's code.
#   INFERWATCH_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch)
#   PYTHON             interpreter to build the venv with (default python3, must be >= 3.11)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${INFERWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch}
key=$( { cat "$root/pyproject.toml" "$root/requirements.lock"; "$python" --version; } | sha256sum | cut -c1-16)
venv="$cache/venv-$key"

if [ ! -x "$venv/.ready" ]; then
  echo "bootstrap: creating $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip setuptools >&2
  "$venv/bin/pip" install --quiet -c "$root/requirements.lock" "$root[demo,test,render,parquet]" >&2
  "$venv/bin/pip" uninstall --quiet --yes inferwatch >&2
  printf '#!/bin/sh\n' > "$venv/.ready" && chmod +x "$venv/.ready"
fi
echo "$venv"
