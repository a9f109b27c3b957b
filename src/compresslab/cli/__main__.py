import sys

from compresslab.cli import main

sys.exit(main())
