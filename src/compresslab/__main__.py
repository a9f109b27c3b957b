"""``python -m compresslab …`` is the ``compresslab`` command (train, evaluate, …)."""

import sys

from .cli import main

sys.exit(main())
