"""Shared fixtures. Tests run on CPU with the data folder $COMPRESSLAB_DATA (else ./data, as `compresslab fetch`
fills it; else a shared/data folder beside the checkout, as on the development machines)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_DATA = ("this test needs the data folder (kodak/ train/ val/ anchors/): set COMPRESSLAB_DATA, or run `compresslab "
           "fetch kodak anchors quickstart-data` (into ./data)")
if "COMPRESSLAB_DATA" not in os.environ:
    for candidate in (REPO / "data", REPO.parent / "shared" / "data"):
        if candidate.is_dir():
            os.environ["COMPRESSLAB_DATA"] = str(candidate.resolve())
            break
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def require_data() -> Path:
    """The data folder, or the test is skipped naming how to get one; in CI (CI=true) a missing folder fails it,
    so CI never passes by skipping the tests that read Kodak."""
    folder = os.environ.get("COMPRESSLAB_DATA")
    if folder and (Path(folder) / "kodak").is_dir():
        return Path(folder)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(NO_DATA)
    pytest.skip(NO_DATA)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data()

import torch  # noqa: E402

torch.set_num_threads(2)

SMOKE = ["debug=smoke", "logger=csv", "callbacks.rich_progress.enabled=false"]


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import compresslab.config  # noqa: F401  (the ${model_min_crop:} resolver)

    from compresslab.conf import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hcompose(config_name="train", overrides=overrides)


def train(tmp: Path, overrides: list[str]) -> dict:
    from compresslab.training.run import run

    return run(compose(SMOKE + overrides), run_dir=tmp)


def run_py(args: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **kw.pop("env", {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


@pytest.fixture(scope="session")
def factorized_ckpt(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("factorized")
    res = train(d, ["model=factorized", "callbacks.rd_eval.enabled=false"])
    return Path(res["last_ckpt"])


@pytest.fixture(scope="session")
def hyperprior_ckpt(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hyperprior")
    res = train(d, ["model=hyperprior", "callbacks.rd_eval.enabled=false"])
    return Path(res["last_ckpt"])


@pytest.fixture(scope="session")
def kodak_crops(data_root, tmp_path_factory) -> Path:
    """Two Kodak images centre-cropped to 256x192 (odd multiple of 64 in one axis: exercises padding)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("kodak_crops")
    for name in ("kodim01.png", "kodim04.png"):
        img = Image.open(data_root / "kodak" / name).convert("RGB")
        w, h = img.size
        img.crop(((w - 256) // 2, (h - 200) // 2, (w - 256) // 2 + 256, (h - 200) // 2 + 200)).save(d / name)
    return d


class _Files(BaseHTTPRequestHandler):
    """A static file server for download tests (fetch, zoo weights): ``files`` maps URL paths to bytes."""

    files: dict[str, bytes] = {}
    truncate_once: set[str] = set()   # paths whose first full response stops half way
    ranges: list[str] = []
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            self.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.truncate_once and not rng:
            self.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1: (base URL, handler class whose ``files`` it serves)."""
    _Files.files, _Files.truncate_once, _Files.ranges, _Files.hits = {}, set(), [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files
    httpd.shutdown()


def released_layout(model) -> dict:
    """A CompressAI model's state dict in the layout of the zoo files released in 2020: the entropy bottleneck's
    parameter lists stored as ``_matrices.N`` / ``_biases.N`` / ``_factors.N`` (CompressAI issue 125), which
    CompressAI's ``load_pretrained`` + ``load_state_dict`` rename and whose CDF buffers they resize."""
    out = {}
    for key, value in model.state_dict().items():
        for old in ("matrices.", "biases.", "factors."):
            if key.startswith("entropy_bottleneck." + old):
                key = "entropy_bottleneck._" + key[len("entropy_bottleneck."):]
        out[key] = value
    return out


def serve_zoo(url: str, files, folder: Path, arch: str, qualities, wrong_hash=()) -> Path:
    """Zoo files built from CompressAI's own classes (seeded per quality) in the released layout, served under names
    carrying their real SHA-256 prefix (``wrong_hash``: a prefix that does not match); returns the
    ``$COMPRESSLAB_ZOO_URLS`` table that points CompressLab at them."""
    import torch
    from compressai.zoo.image import cfgs, model_architectures

    table: dict = {arch: {"mse": {}}}
    for q in qualities:
        torch.manual_seed(q)
        ref = model_architectures[arch](*cfgs[arch][q])
        ref.update(force=True)
        buf = io.BytesIO()
        torch.save(released_layout(ref), buf)
        data = buf.getvalue()
        prefix = "0badc0de" if q in wrong_hash else hashlib.sha256(data).hexdigest()[:8]
        name = f"/models/v1/{arch}-{q}-{prefix}.pth.tar"
        files.files[name] = data
        table[arch]["mse"][str(q)] = url + name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zoo_urls.json"
    path.write_text(json.dumps(table))
    return path


def assert_decodes_identically_elsewhere(clab: Path, ckpt, expected, tmp: Path) -> None:
    """Decode ``clab`` with the CLI in a fresh Python process and require the same pixels as ``expected``."""
    from PIL import Image

    out = tmp / f"{clab.stem}-other-process.png"
    r = run_py(["-m", "compresslab.cli", "decompress", str(clab), "--ckpt", str(ckpt), "-o", str(out)], timeout=180)
    assert r.returncode == 0, r.stderr
    there = Image.open(out)
    assert there.size == expected.size
    assert list(there.getdata()) == list(expected.getdata())


# -- a real PostgreSQL server for the many-workers sweep tests ---------------------------------------------------
def _postgres_bindir() -> Path | None:
    import glob
    import shutil

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server: initdb + pg_ctl in a temporary folder, listening on 127.0.0.1 only (a free
    port, trust authentication), one database; stopped and removed at the end of the session. Skipped only where
    the server binaries are not installed (Debian: apt-get install postgresql; .ci/run does that)."""
    import pwd
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 not installed: pip install -e '.[postgres]'")
    root = Path(tempfile.mkdtemp(prefix="compresslab-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres (or nobody) user
        user = next((u for u in ("postgres", "nobody") if _has_user(pwd, u)), None)
        if user is None:
            pytest.skip("running as root and no postgres/nobody user to run the PostgreSQL server as")
        shutil.chown(root, user)
        prefix = ["runuser", "-u", user, "--"]
    data, port = root / "data", free_port()

    def pg(*args: str) -> None:
        r = subprocess.run(prefix + [str(bindir / args[0]), *args[1:]], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{args[0]} failed: {r.stdout}{r.stderr}"

    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
       "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {root}", "start")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "compresslab")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/compresslab"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _has_user(pwd, name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# -- a one-node SLURM cluster for the `slurm` tests (tests/slurm_cluster.py) ------------------------------------
@pytest.fixture(scope="session")
def slurm_cluster():
    """munged + slurmctld + slurmd on this machine (2 CPUs, partition `short`), $SLURM_CONF pointing at it for
    the session; stopped at the end. Skipped only where the packages are not installed (Debian: apt-get install
    slurm-wlm munge; .ci/run does that) or where the daemons cannot run as root."""
    from slurm_cluster import LocalSlurm, missing_binaries

    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons as root")
    cluster = LocalSlurm()
    try:
        cluster.start()
    except Exception as e:  # noqa: BLE001 - a cluster that does not come up is a failure, with its logs
        cluster.stop()
        pytest.fail(f"the local SLURM cluster did not start: {e}\n{cluster.logs()}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
