"""CompressLab's Hydra configs, shipped inside the package (``pkg://compresslab.conf``) so an installed wheel runs
from any folder. The repository's top-level ``conf`` is a link to this folder."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
CONFIG_MODULE = "compresslab.conf"
