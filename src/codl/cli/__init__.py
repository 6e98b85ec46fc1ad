"""Command-line interface: thin subcommands over the library, one module per group of
commands (run.py, bench.py, predictor.py), the parser in parser.py.

    codl models
    codl inspect MODEL [--input-size H W] [--width W] [--json FILE]
    codl run MODEL -d cpu|cuda [--threads N] [-n ITERS] [--warmup N] [--json FILE]

MODEL is a built-in model name (``codl models``) or a path to an ``.onnx`` file. Results
go to stdout, progress and errors to stderr; errors exit with status 2.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..errors import CodlError
from .parser import build_parser, show_defaults

__all__ = ["main", "build_parser"]


def _model_op_keys() -> frozenset[str]:
    """The built-in models' op keys (:func:`codl.profile.sampling.model_op_keys`), looked
    up here when called, so that tests can stand in a few ops for the zoo's."""
    from ..profile.sampling import model_op_keys

    return model_op_keys()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "bench" and argv[1] not in ("overhead", "exchange", "model") \
            and not argv[1].startswith("-"):
        argv.insert(1, "model")  # codl bench MODEL
    parser = build_parser()
    show_defaults(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except CodlError as e:
        print(f"codl: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
