"""A one-node SLURM cluster on this machine, for the `slurm` tests: munged with its own key and socket, slurmctld and
slurmd started in the foreground (as root, no systemd, no cgroups) from a slurm.conf in a temporary folder that
names this host with 2 CPUs and a short-time partition on its own ports, and holds a requeued job 10 s instead of
SLURM's 120 s. Debian: apt-get install slurm-wlm munge
(.ci/run does it). Clients find it through $SLURM_CONF."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """Start with ``start()``, stop with ``stop()``; ``env`` is what a client process needs (SLURM_CONF)."""

    def __init__(self, cpus: int = 2, max_time_min: int = 10, requeue_delay_s: int = 10, sched_interval_s: int = 2,
                 kill_wait_s: int = 2):
        """``requeue_delay_s``: AuthInfo's cred_expire, which is also how long SLURM holds a requeued job (its
        BeginTime) before it may start again (slurm.conf(5); 120 s by default, what a site has); a few seconds
        are enough to launch a step on this one node. ``sched_interval_s``: how often the main and the backfill
        scheduler look at pending jobs (60 s / 30 s by default), so a requeued job starts soon after its hold and
        not only at the next event (a submission, a job's end). ``kill_wait_s``: KillWait, the seconds between the
        SIGTERM of scancel and the SIGKILL (30 s by default); Lightning and submitit ignore the SIGTERM, so a
        cancelled training job ends only at the SIGKILL."""
        self.root = Path(tempfile.mkdtemp(prefix="compresslab-slurm-"))
        os.chmod(self.root, 0o700)
        self.host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
        self.cpus, self.max_time_min = cpus, max_time_min
        self.requeue_delay_s, self.sched_interval_s, self.kill_wait_s = requeue_delay_s, sched_interval_s, kill_wait_s
        self.procs: list[subprocess.Popen] = []
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool"):
            (r / d).mkdir()
        mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
        self.conf.write_text(f"""\
ClusterName=compresslab-test
SlurmctldHost={self.host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge.socket,cred_expire={self.requeue_delay_s}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval={self.sched_interval_s},bf_interval={self.sched_interval_s}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait={self.kill_wait_s}
MinJobAge=300
SlurmdTimeout=30
NodeName={self.host} CPUs={self.cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=short Nodes={self.host} Default=YES MaxTime={self.max_time_min} State=UP
""")

    def start(self, timeout: float = 60) -> "LocalSlurm":
        r = self.root
        self._write_conf()
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self._spawn([_which("munged"), "-F", "--force", f"--socket={r}/munge.socket", f"--key-file={key}",
                     f"--pid-file={r}/munged.pid", f"--log-file={r}/munged.log", f"--seed-file={r}/munged.seed"],
                    "munged")
        self._wait(lambda: (r / "munge.socket").exists(), 20, "munged did not create its socket")
        self._spawn([_which("slurmctld"), "-D", "-c", "-f", str(self.conf)], "slurmctld")
        self._spawn([_which("slurmd"), "-D", "-f", str(self.conf)], "slurmd")
        self._wait(self._idle, timeout, "the node did not come up idle in sinfo")
        return self

    def _spawn(self, cmd: list[str], name: str) -> None:
        out = open(self.root / f"{name}.out", "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}))

    def _idle(self) -> bool:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited ({p.returncode}): {self.logs()}")
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True,
                           env={**os.environ, **self.env})
        return r.returncode == 0 and r.stdout.strip() == "idle"

    @staticmethod
    def _wait(cond, timeout: float, message: str) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.5)
        raise RuntimeError(message)

    def logs(self, tail: int = 3000) -> str:
        out = []
        for f in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env={**os.environ, **self.env}, **kw)

    def stop(self) -> None:
        self.run("scancel", "--user=root")  # nothing of ours left running
        for p in reversed(self.procs):  # slurmd, slurmctld, munged: the processes started here, by their handle
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)
