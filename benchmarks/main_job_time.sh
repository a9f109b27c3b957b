#!/usr/bin/env bash
# The README's main job as a newcomer types it (setup, fetch, train + Kodak evaluation), timed on this machine, with
# the load before and after, written to benchmarks/results/main_job_<date>.json (commit it: the README's wall time is
# read from it). Run it on an idle machine; the data folder ($COMPRESSLAB_DATA) already holding Kodak and the crops.
#   bash benchmarks/main_job_time.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=offline
OUT=benchmarks/results/main_job_$(date -u +%Y-%m-%d).json
load0=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s.%N)
bash scripts/setup.sh > /tmp/main_job_setup.log 2>&1 && .venv/bin/compresslab fetch kodak quickstart-data \
  > /tmp/main_job_fetch.log 2>&1
t1=$(date +%s.%N)
.venv/bin/python train.py experiment=quickstart > /tmp/main_job_train.log 2>&1
rc=$?
t2=$(date +%s.%N)
load1=$(cut -d' ' -f1 /proc/loadavg)
run=$(grep -o "run directory: .*" /tmp/main_job_train.log | tail -1 | cut -d' ' -f3)
python3 - "$OUT" "$t0" "$t1" "$t2" "$rc" "$load0" "$load1" "$run" <<'PY'
import json, os, platform, subprocess, sys, time
out, t0, t1, t2, rc, l0, l1, run = sys.argv[1:]
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
doc = {"command": "bash scripts/setup.sh && .venv/bin/compresslab fetch kodak quickstart-data && "
                  ".venv/bin/python train.py experiment=quickstart",
       "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(t0))),
       "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "machine": f"{cpu}, {os.cpu_count()} cores, {platform.machine()}", "exit_code": int(rc),
       "setup_and_fetch_s": round(float(t1) - float(t0), 1), "train_and_evaluate_s": round(float(t2) - float(t1), 1),
       "total_s": round(float(t2) - float(t0), 1), "load_before": float(l0), "load_after": float(l1),
       "run_dir": os.path.relpath(run) if run else None}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
print(json.dumps(doc, indent=1))
PY
