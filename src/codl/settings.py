"""Every environment variable codl reads, declared in one place.

- ``CODL_CACHE_DIR``: where profiles and fitted models are kept; default
  ``$XDG_CACHE_HOME/codl``, and ``~/.cache/codl`` when ``XDG_CACHE_HOME`` is unset.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("CODL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codl"
