#!/usr/bin/env bash
# Install CompressLab with the lock (constraints.txt) under another Python (pyenv's interpreter) into a venv outside the
# checkout, then run the fast tests and the README's main job at smoke scale; writes what it installed and measured to
# benchmarks/results/check_python_<version>.md (commit that file: it is the record that this Python was tested).
#   bash scripts/check_python.sh 3.12        (or 3.13; VENV=... PYTHON=/path/to/python override the defaults)
# The lock is installed exactly (--no-deps, every line of constraints.txt whose marker holds), because on 3.13 no
# resolver can install it: CompressAI 1.2.8 declares numpy<2 and numpy<2 has no 3.13 build, so constraints.txt pins
# numpy 2 there and `pip check` records that one declared conflict (the tests are what say it works).
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:?usage: scripts/check_python.sh 3.12|3.13}
PY=${PYTHON:-$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/"$V".*/bin/python 2>/dev/null | sort -V | tail -1)}
[ -x "$PY" ] || { echo "check_python: no Python $V found (pyenv install $V, or PYTHON=/path/to/python$V)"; exit 2; }
# outside the checkout: a venv inside it would be walked by tests that snapshot the tree (gigabytes of torch)
VENV=${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/compresslab/venv-py$V}
OUT=benchmarks/results/check_python_$V.md
export COMPRESSLAB_DATA=${COMPRESSLAB_DATA:-/work/shared/data} WANDB_MODE=offline PYTHONWARNINGS=ignore
now() { date +%s; }

t0=$(now)
rm -rf "$VENV" && "$PY" -m venv "$VENV"
cache=$(mktemp -d)   # a fresh pip cache: its size afterwards is what this install downloaded
PIP_CACHE_DIR=$cache "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
PIP_CACHE_DIR=$cache "$VENV/bin/pip" install -q --no-deps -r constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
PIP_CACHE_DIR=$cache "$VENV/bin/pip" install -q --no-deps -e '.[test]' 2>&1 \
  | grep -v "^WARNING: Location" || true
download_mb=$(du -sm "$cache" | cut -f1); rm -rf "$cache"
install_s=$(( $(now) - t0 )); venv_mb=$(du -sm "$VENV" | cut -f1)
pipcheck=$("$VENV/bin/pip" check 2>&1 || true)
versions=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, platform
print("Python", platform.python_version(), "|", " | ".join(f"{p} {md.version(p)}" for p in (
    "torch", "numpy", "compressai", "lightning", "hydra-core", "optuna", "wandb", "pillow", "scipy")))
EOF
)

t1=$(now)
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" "${@:2}" > "$VENV/pytest.log" 2>&1; tests_rc=$?
t2=$(now)
run=$(mktemp -d)
"$VENV/bin/python" train.py experiment=quickstart debug=smoke logger=csv "hydra.run.dir=$run/run" \
  "paths.output_dir=$run" > "$VENV/smoke.log" 2>&1; smoke_rc=$?
t3=$(now)
set -e
rm -rf "$run"
summary=$(grep -E "passed|failed|error" "$VENV/pytest.log" | tail -1)
failures=$(grep -E "^(FAILED|ERROR) " "$VENV/pytest.log" | cut -c1-200 || true)

cat > "$OUT" <<EOF
# Python $V: lock installed, fast tests and the README's main job (smoke)

Written by \`bash scripts/check_python.sh $V\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src tests conf || echo " (uncommitted changes in src/tests/conf)"), on $(uname -m) with $(nproc) cores (shared with other work: wall times are upper bounds).

- Installed: $versions
- Install: $install_s s wall, $download_mb MB downloaded, venv $venv_mb MB
- \`pip check\`: $( [ -z "$pipcheck" ] && echo "nothing" || echo "$pipcheck" | tr '\n' ';')
- Fast tests (\`pytest -m "not slow"\`): ${summary:-no summary line} (exit $tests_rc), $(( t2 - t1 )) s wall
- Main job (\`train.py experiment=quickstart debug=smoke logger=csv\`): exit $smoke_rc, $(( t3 - t2 )) s wall
EOF
if [ -n "$failures" ]; then printf '\nFailures:\n\n```\n%s\n```\n' "$failures" >> "$OUT"; fi
if [ "$smoke_rc" != 0 ]; then printf '\nMain job, last lines:\n\n```\n%s\n```\n' "$(tail -15 "$VENV/smoke.log")" >> "$OUT"; fi
cat "$OUT"
[ "$tests_rc" = 0 ] && [ "$smoke_rc" = 0 ]
