"""Entry point: ``python -m benchmarks [--quick] [--json PATH]``."""

import sys

from benchmarks.cli import main

sys.exit(main())
