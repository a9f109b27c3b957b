"""The decode-speed benchmark (the zhang2022 report's speed rows read its --out file): sequential step counts as the
models define them, and the file names the command, machine, commit and wall time it was measured with."""

import subprocess
import sys

import numpy as np
from PIL import Image

from compresslab.evaluation.render import read_md_table


def test_decode_speed_writes_its_table_with_provenance_and_counts_sequential_steps(tmp_path):
    (tmp_path / "kodak").mkdir()
    Image.fromarray((np.random.RandomState(0).rand(96, 160, 3) * 255).astype("uint8")).save(
        tmp_path / "kodak" / "kodim23.png")
    out = tmp_path / "results" / "speed.txt"
    r = subprocess.run([sys.executable, "-m", "compresslab.drivers.decode_speed", "--sizes", "64x128", "128x128",
                        "--threads", "1", "--N", "16", "--M", "16", "--profiles", "fast", "--scales", "2",
                        "--transform", "gdn", "--out", str(out)],
                       env={"COMPRESSLAB_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    head = out.read_text().splitlines()[:2]
    assert head[0].startswith("# command: python -m compresslab.drivers.decode_speed --sizes 64x128 128x128")
    assert "# machine: " in head[1] and " commit " in head[1] and " wall " in head[1] and "torch " in head[1]
    rows = read_md_table(out)
    steps = {(row["image"], row["model"]): int(row["sequential steps"]) for row in rows}
    # mbt2018: one context step per latent position (stride 16); checkerboard: 2 passes; MSP: constant in size
    assert steps[("64x128", "mbt2018 (serial)")] == 4 * 8 and steps[("128x128", "mbt2018 (serial)")] == 8 * 8
    assert steps[("64x128", "cheng2020 checkerboard")] == steps[("128x128", "cheng2020 checkerboard")] == 2
    assert steps[("64x128", "msp-fast")] == steps[("128x128", "msp-fast")] < 32
    assert all(float(row["decode s"]) > 0 for row in rows)
