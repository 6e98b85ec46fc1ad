"""``python -m codl``: the ``codl`` command."""

import sys

from .cli import main

sys.exit(main())
