#!/usr/bin/env bash
# Install CompressLab with the lock (constraints.txt) under another Python (pyenv's interpreter) into a venv outside the
# checkout, then run the fast tests and the README's main job at smoke scale on a clean checkout of HEAD (a git
# worktree: the record names a commit, not a working tree in flux); writes what it installed and measured to
# benchmarks/results/check_python_<version>.md (commit that file: it is the record that this Python was tested).
#   bash scripts/check_python.sh 3.12 [pytest args]   (or 3.13; VENV=... PYTHON=/path/to/python; REBUILD=1 reinstalls
#                                                      a venv whose lock is unchanged; TREE=. tests the working tree)
# The lock is installed exactly (--no-deps, every line of constraints.txt whose marker holds), because on 3.13 no
# resolver can install it: CompressAI 1.2.8 declares numpy<2 and numpy<2 has no 3.13 build, so constraints.txt pins
# numpy 2 there and `pip check` records that one declared conflict (the tests are what say it works).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
V=${1:?usage: scripts/check_python.sh 3.12|3.13}
PY=${PYTHON:-$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/"$V".*/bin/python 2>/dev/null | sort -V | tail -1)}
[ -x "$PY" ] || { echo "check_python: no Python $V found (pyenv install $V, or PYTHON=/path/to/python$V)"; exit 2; }
# outside the checkout: a venv inside it would be walked by tests that snapshot the tree (gigabytes of torch)
VENV=${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/compresslab/venv-py$V}
OUT=$REPO/benchmarks/results/check_python_$V.md
if [ -z "${COMPRESSLAB_DATA:-}" ]; then  # the shared data beside some ancestor of the checkout, as .ci/run finds it
  d=$REPO; while [ "$d" != / ]; do d=$(dirname "$d"); [ -d "$d/shared/data" ] && export COMPRESSLAB_DATA="$d/shared/data" && break; done || :
fi
export WANDB_MODE=offline PYTHONWARNINGS=ignore
now() { date +%s; }

stamp=$(sha256sum constraints.txt | cut -c1-16)
t0=$(now)
if [ "${REBUILD:-0}" = 1 ] || [ "$(cat "$VENV/.lock-installed" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$VENV" && "$PY" -m venv "$VENV"
  # pip's own log says what came from the network ("Downloading x.whl (N MB)") and what from a local wheel folder
  "$VENV/bin/pip" install --progress-bar off --upgrade pip > "$VENV/install.log" 2>&1
  "$VENV/bin/pip" install --progress-bar off --no-deps -r constraints.txt >> "$VENV/install.log" 2>&1
  echo "$stamp" > "$VENV/.lock-installed"
  install="$(( $(now) - t0 )) s wall, $(grep -o 'Downloading [^ ]* ([0-9.]* [kMG]B)' "$VENV/install.log" | awk '
    {n=$3; sub(/\(/,"",n); u=$4; f=(u ~ /kB/)?0.001:(u ~ /GB/)?1000:1; s+=n*f; c++} END {printf "%d files, %.0f MB", c, s}'
    ) downloaded, $(grep -c '^Processing /opt' "$VENV/install.log" || true) from local wheel folders"
  echo "$install" > "$VENV/.install-summary"
else
  install="venv reused (lock unchanged): $(cat "$VENV/.install-summary")"
fi
venv_mb=$(du -sm "$VENV" | cut -f1)

# the code under test: a clean worktree of HEAD (TREE=. for the working tree as it is)
if [ "${TREE:-}" = . ]; then tree=$REPO; else
  tree=$(mktemp -d)/compresslab; git worktree add -q --detach "$tree" HEAD
  trap 'git -C "$REPO" worktree remove --force "$tree"' EXIT
fi
commit=$(git -C "$tree" rev-parse --short HEAD)$(git -C "$tree" diff --quiet HEAD || echo " with uncommitted changes")
"$VENV/bin/pip" install -q --no-deps -e "$tree[test]" 2>&1 | grep -v "^WARNING: Location" || true
pipcheck=$("$VENV/bin/pip" check 2>&1 || true)
versions=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, platform
print("Python", platform.python_version(), "|", " | ".join(f"{p} {md.version(p)}" for p in (
    "torch", "numpy", "compressai", "lightning", "hydra-core", "optuna", "wandb", "pillow", "scipy")))
EOF
)

cd "$tree"
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

Written by \`bash scripts/check_python.sh $V\` on $(date -u +%Y-%m-%d) at commit $commit, on $(uname -m) with $(nproc) cores (shared with other work: wall times are upper bounds).

- Installed: $versions
- Install: $install; venv $venv_mb MB
- \`pip check\`: $( [ -z "$pipcheck" ] && echo "nothing" || echo "$pipcheck" | tr '\n' ';')
- Fast tests (\`pytest -m "not slow"\`): ${summary:-no summary line} (exit $tests_rc), $(( t2 - t1 )) s wall
- Main job (\`train.py experiment=quickstart debug=smoke logger=csv\`): exit $smoke_rc, $(( t3 - t2 )) s wall
EOF
if [ -n "$failures" ]; then printf '\nFailures:\n\n```\n%s\n```\n' "$failures" >> "$OUT"; fi
if [ "$smoke_rc" != 0 ]; then printf '\nMain job, last lines:\n\n```\n%s\n```\n' "$(tail -15 "$VENV/smoke.log")" >> "$OUT"; fi
cat "$OUT"
[ "$tests_rc" = 0 ] && [ "$smoke_rc" = 0 ]
