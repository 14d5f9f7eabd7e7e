"""``python -m partitioner.cli``."""

import sys

from partitioner.cli import main

sys.exit(main())
