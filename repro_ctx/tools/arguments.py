"""Command-line values shared by the CLI, the pytest options and the cell magic's options.

Kept apart from ``cli`` so that the magic (loaded by ``import repro_ctx``) and
the pytest plugin parse a seed without importing the whole command line.
"""

from __future__ import annotations

import argparse
import re

from ..core.seed import check_seed


def seed_argument(text: str) -> int:
    """An argparse ``type``: a seed, with the same rules and message as ``check_seed``."""
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a seed must be an int in [0, 2**64), got {text!r}"
        ) from None
    try:
        return check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pattern_argument(text: str) -> re.Pattern[bytes]:
    """An argparse ``type``: a regular expression, compiled to match bytes (output)."""
    try:
        return re.compile(text.encode())
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({exc})") from None
