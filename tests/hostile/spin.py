"""A CPU-bound stand-in for a parse that never ends, run in the parser pool by
``test_parsing_trust.py::test_6_the_parser_pool_dies_with_its_parent`` (importable by pool workers)."""

from __future__ import annotations

import time


def spin(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
