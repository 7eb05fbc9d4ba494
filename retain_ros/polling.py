"""Waiting for a condition, written once: the node processes' helpers, the live replay and the tests poll with it."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll(predicate: Callable[[], object], timeout_s: float, poll_s: float = 0.05):
    """Call `predicate` until it returns something truthy or `timeout_s` passes; returns its last value.

    The predicate is called once more at the deadline, so a condition that became true during the last sleep counts.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    return predicate()
