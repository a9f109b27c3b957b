#!/usr/bin/env bash
# Install CompressLab at the lowest versions pyproject.toml claims (constraints-lowest.txt) into a second venv and run
# the fast tests there: the floors in pyproject.toml are claims this script checks. Downloads a few GB the first time.
#   bash scripts/check_lowest.sh            (venv in .venv-lowest/; PYTHON=python3.12 for another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-lowest}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q -c constraints-lowest.txt -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/pip" freeze --exclude-editable > "$VENV/installed.txt"
# every floor really installed (a range that pip satisfied with something newer would test nothing)
while IFS='==' read -r name _ version; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  grep -qix "$name==$version" "$VENV/installed.txt" || { echo "lowest: $name is not $version in $VENV"; exit 1; }
done < constraints-lowest.txt
WANDB_MODE=offline "$VENV/bin/python" -m pytest -q -m "not slow" "$@"
