"""Regenerate src/compresslab/fetch_manifest.json: URLs of the public sources, with the SHA-256 of every file whose
byte-exact copy we hold (Kodak from Zelex/images, CompressAI's result JSONs, both at pinned commits).

    python scripts/make_fetch_manifest.py --data <folder with kodak/ and anchors/>
"""

import argparse
import hashlib
import json
from pathlib import Path

KODAK = "https://raw.githubusercontent.com/Zelex/images/0b8a89db599a384124fb991b85d40cfd63c73d58/kodak/{}"
COMPRESSAI = "https://raw.githubusercontent.com/InterDigitalInc/CompressAI/869a9f5d4126d015b7de8f203fe60ee9e1608193/"
CLIC = "https://data.vision.ee.ethz.ch/cvl/clic/"
DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def anchor_url(rel: Path) -> str:
    """anchors/<set>[/8bit-decoded]/<file> -> results/image[/8bit-decoded]/<set>/<file> (CompressAI's layout)."""
    parts = rel.parts
    if len(parts) == 3 and parts[1] == "8bit-decoded":
        return COMPRESSAI + f"results/image/8bit-decoded/{parts[0]}/{parts[2]}"
    return COMPRESSAI + f"results/image/{rel.as_posix()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src/compresslab/fetch_manifest.json"))
    data = Path(ap.parse_args().data)
    a = ap.parse_args()
    kodak = sorted((data / "kodak").glob("kodim*.png"))
    anchors = sorted((data / "anchors").rglob("*.json"))
    doc = {
        "kodak": {"about": "Kodak PhotoCD PCD0992, 24 PNG (byte-exact copies of Zelex/images@0b8a89d)",
                  "files": [{"url": KODAK.format(p.name), "path": f"kodak/{p.name}", "sha256": sha(p)} for p in kodak]},
        "anchors": {"about": "CompressAI's published RD results (results/image/, commit 869a9f5d; BSD 3-Clause Clear, "
                             "(c) InterDigital Communications)", "root": "anchors",
                    "files": [{"url": anchor_url(p.relative_to(data / "anchors")),
                               "path": p.relative_to(data / "anchors").as_posix(), "sha256": sha(p)}
                              for p in anchors]},
        "clic2020": {"about": "CLIC 2020 professional + mobile, train and valid (compression.cc); no published "
                              "checksums", "files": [{"url": CLIC + f, "path": f, "sha256": None, "extract": True}
                                                     for f in ("professional_train_2020.zip", "mobile_train_2020.zip",
                                                               "professional_valid_2020.zip",
                                                               "mobile_valid_2020.zip")]},
        "quickstart-data": {"about": "train/ and val/ for the default layout, cut from DIV2K's 100 validation images "
                                     "(90 x 6 random 256² crops, 10 centre 512² crops; DIV2K: academic research use)",
                            "files": [{"url": DIV2K + "DIV2K_valid_HR.zip", "path": "DIV2K_valid_HR.zip",
                                       "sha256": None, "extract": True}],
                            "prepare": {"crops": {"src_dir": "DIV2K_valid_HR", "train": 90, "per_image": 6,
                                                  "size": 256, "val": 10, "val_size": 512}}},
        "div2k": {"about": "DIV2K HR train (800) and valid (100) (Agustsson & Timofte 2017); no published checksums",
                  "files": [{"url": DIV2K + f, "path": f, "sha256": None, "extract": True}
                            for f in ("DIV2K_train_HR.zip", "DIV2K_valid_HR.zip")]},
    }
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {a.out}: {len(kodak)} Kodak files, {len(anchors)} anchor files")


if __name__ == "__main__":
    main()
