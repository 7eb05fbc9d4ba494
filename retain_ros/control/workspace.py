"""The Cartesian workspace every planned point must stay in: a box for the hand and a table plane for the whole arm.

Joint limits alone let a policy drive the fingers into the table or the hand far out of the cell. Each planned joint
configuration is mapped by the FR3's forward kinematics (`retain_ros.fr3_kinematics`) to its elbow, wrist, flange and
fingertip points: the hand points (flange, fingertips) must lie inside [box_min, box_max] and no point below
`table_height_m`. An arm already outside (moved by hand, or overshooting at a boundary) may only come back: a point
is accepted while it is no farther outside than where the command starts, point by point and limit by limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.fr3_kinematics import HAND_POINTS, POINT_NAMES, points

_HAND = np.array([name in HAND_POINTS for name in POINT_NAMES])
_TOLERANCE_M = 1e-3  # how far out a point may be when the start is inside (rounding, not motion); never added


@dataclass(frozen=True)
class Workspace:
    """Where the arm may go (base frame fr3_link0, metres).

    Attributes:
        box_min: lower corner (x, y, z) of the box the flange and fingertips stay in.
        box_max: upper corner (x, y, z).
        table_height_m: no point of the arm (elbow, wrist, flange, fingertips) goes below this height.
    """

    box_min: tuple[float, float, float] = (-0.3, -0.9, 0.0)
    box_max: tuple[float, float, float] = (1.0, 0.9, 1.2)
    table_height_m: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.box_min, float), np.asarray(self.box_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()) \
                or (lo >= hi).any():
            raise ConfigError(f"workspace_min {list(self.box_min)} and workspace_max {list(self.box_max)} must be "
                              "three finite numbers each (x, y, z in m, base frame) with min < max")
        if not np.isfinite(self.table_height_m):
            raise ConfigError(f"table_height_m={self.table_height_m} must be a finite height (m, base frame)")

    def excess(self, q: np.ndarray) -> np.ndarray:
        """How far (m) each configuration's points are outside the box (hand points) and below the table (all).

        Args:
            q: (N, 7) or (7,) joint positions.

        Returns:
            (N, 4, 2): per point in `POINT_NAMES` order, [outside the box, below the table]; 0 where inside.
        """
        pts = points(np.atleast_2d(q))
        lo, hi = np.asarray(self.box_min, float), np.asarray(self.box_max, float)
        box = np.where(_HAND, np.maximum(lo - pts, pts - hi).max(axis=2), 0.0)
        table = self.table_height_m - pts[:, :, 2]
        return np.maximum(np.stack([box, table], axis=2), 0.0)

    def problem(self, positions: np.ndarray, start: np.ndarray) -> str | None:
        """Why the planned points leave the workspace (the first offending one, named), or None.

        Each point and each limit on its own: a point may be outside only where the start already is, and no farther
        (`_TOLERANCE_M` for rounding), so an arm cannot creep out over many commands, nor one excess excuse another.

        Args:
            positions: (N, 7) planned joint positions.
            start: (7,) joint positions the command starts from.
        """
        allowed = np.maximum(self.excess(start)[0], _TOLERANCE_M)
        excess = self.excess(positions)
        over = excess - allowed
        bad = np.flatnonzero((over > 0).any(axis=(1, 2)))
        if not len(bad):
            return None
        i = int(bad[0])
        k, which = np.unravel_index(int(np.argmax(over[i])), over[i].shape)
        point = points(positions[i])[k]
        where = f"{excess[i, k, which] * 1e3:.0f} mm " + (
            f"below table_height_m {self.table_height_m}" if which == 1 else
            f"outside workspace_min {list(self.box_min)} / workspace_max {list(self.box_max)}")
        q = ", ".join(f"{v:.3f}" for v in positions[i])
        return (f"planned point {i} leaves the workspace: at q = [{q}] the {POINT_NAMES[k]} would be at "
                f"({', '.join(f'{v:.3f}' for v in point)}) m, {where}")
