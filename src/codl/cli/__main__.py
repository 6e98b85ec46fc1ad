"""``python -m codl.cli``."""

import sys

from . import main

sys.exit(main())
