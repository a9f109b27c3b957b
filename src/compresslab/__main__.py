"""``python -m compresslab …`` is the ``compresslab`` command (train, evaluate, …)."""

import sys

from compresslab.cli import main

sys.exit(main())
