"""The DROID gripper convention, defined once: a position in [0, 1] (0 open .. 1 closed) <-> a finger opening in m.

The simulator, the policy node and the bag evaluation all convert with these, so a width recorded on one side reads
back as the same position on the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gripper_width(position: float, max_width_m: float) -> float:
    """DROID gripper position (0 open .. 1 closed) -> finger opening in metres."""
    return float((1.0 - np.clip(position, 0.0, 1.0)) * max_width_m)


def width_to_position(width_m: float, max_width_m: float) -> float:
    """Finger opening in metres -> DROID gripper position (0 open .. 1 closed)."""
    return float(np.clip(1.0 - width_m / max_width_m, 0.0, 1.0))


def gripper_position(finger_positions: Sequence[float], max_width_m: float) -> float:
    """Finger joint positions (each the half opening, m) -> DROID gripper position (0 open .. 1 closed)."""
    return width_to_position(float(np.sum(np.asarray(finger_positions, dtype=float))), max_width_m)
