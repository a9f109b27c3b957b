#!/usr/bin/env bash
# Idempotent set-up: creates .venv/ at the repository root and installs CompressLab with the exact versions of
# constraints.txt (our runs and CI; pyproject.toml only states the ranges a user's environment may satisfy), with the
# extras the tests use (test; dashboard: optuna-dashboard; postgres: psycopg2; docs: mkdocs).
# Re-running is cheap: pip is skipped while pyproject.toml and constraints.txt are unchanged since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.compresslab-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import compresslab" 2>/dev/null; then
  .venv/bin/pip install -q -c constraints.txt -e '.[test,dashboard,postgres,docs]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import compressai, lightning, hydra, wandb, bjontegaard, compresslab" 2>/dev/null
  echo "$want" > "$stamp"
fi
