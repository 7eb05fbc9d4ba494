"""Where objects start: seeded sampling of table layouts with separation and task-specific constraints.

A layout maps object names (cubes, plates, distractors) to (x, y, yaw) on the table. Sampling is rejection sampling
from a numpy Generator, so the same generator state gives the same layout.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.sim.physics import CUBES, DISTRACTORS, PLATES

# Reachable, camera-visible part of the table (m, robot base frame).
WORKSPACE_X = (0.36, 0.64)
WORKSPACE_Y = (-0.24, 0.24)
# Where distractors may stand (x range, y range; m): anywhere on the visible table.
DISTRACTOR_AREA = ((0.3, 0.72), (-0.32, 0.32))
# Clearance radius of each object kind (m): cubes leave room for open fingers, plates are 7.5 cm discs.
_RADIUS_M = {"cube": 0.05, "plate": 0.075, "distractor": 0.045}
# Plates may overlap nothing; cubes and distractors keep their radii apart plus this gap.
_GAP_M = 0.01
MAX_TRIES = 4000


def kind_of(name: str) -> str:
    """Return 'cube', 'plate' or 'distractor' for an object name."""
    if name in CUBES:
        return "cube"
    if name in PLATES:
        return "plate"
    if name in DISTRACTORS:
        return "distractor"
    raise ConfigError(f"unknown object '{name}'; objects are {list(CUBES + PLATES + DISTRACTORS)}")


@dataclass(frozen=True)
class Layout:
    """Initial object poses: name -> (x m, y m, yaw rad)."""

    poses: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    def xy(self, name: str) -> np.ndarray:
        """Position of `name` on the table (m)."""
        return np.array(self.poses[name][:2])

    def with_poses(self, extra: Mapping[str, tuple[float, float, float]]) -> Layout:
        """A copy with more (or replaced) poses."""
        return Layout({**self.poses, **extra})


Constraint = Callable[[Layout], bool]


def separated(layout: Layout, margin_m: float = 0.0) -> bool:
    """Whether every pair of objects keeps its clearance (plus `margin_m`)."""
    names = list(layout.poses)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            need = _RADIUS_M[kind_of(a)] + _RADIUS_M[kind_of(b)] + _GAP_M + margin_m
            if np.linalg.norm(layout.xy(a) - layout.xy(b)) < need:
                return False
    return True


def corridor_clear(layout: Layout, mover: str, start: np.ndarray, end: np.ndarray, half_width_m: float) -> bool:
    """Whether no cube or distractor other than `mover` intrudes on the straight strip from `start` to `end`.

    Plates are flat decals, so they never block. Used by push tasks for the pusher's and the cube's path.
    """
    direction = end - start
    length = float(np.linalg.norm(direction))
    unit = direction / max(length, 1e-9)
    for name in layout.poses:
        if name == mover or kind_of(name) == "plate":
            continue
        rel = layout.xy(name) - start
        along = float(rel @ unit)
        across = abs(float(rel[0] * unit[1] - rel[1] * unit[0]))
        reach = _RADIUS_M[kind_of(name)]
        if -reach <= along <= length + reach and across < half_width_m + reach:
            return False
    return True


def in_workspace(xy: np.ndarray, margin_m: float = 0.0) -> bool:
    """Whether `xy` lies in the workspace shrunk by `margin_m`."""
    return (WORKSPACE_X[0] + margin_m <= xy[0] <= WORKSPACE_X[1] - margin_m
            and WORKSPACE_Y[0] + margin_m <= xy[1] <= WORKSPACE_Y[1] - margin_m)


def sample_layout(rng: np.random.Generator, names: Sequence[str], constraint: Constraint,
                  center: Layout | None = None, jitter_m: float = 0.0, yaw_jitter_rad: float = 0.0,
                  margin_m: float = 0.0, what: str = "layout") -> Layout:
    """Draw a layout of `names` that keeps clearances and satisfies `constraint`.

    Args:
        rng: the episode's generator.
        names: objects to place.
        constraint: task-specific check (paths clear, targets reachable).
        center: when given, each object is drawn within +-jitter_m / +-yaw_jitter_rad of its pose there;
            otherwise uniformly over the workspace with any yaw.
        jitter_m: position half-range around `center` (m).
        yaw_jitter_rad: yaw half-range around `center` (rad).
        margin_m: extra clearance between objects (m).
        what: name used in the error message.

    Returns:
        The layout.

    Raises:
        ConfigError: no valid layout in MAX_TRIES draws (the settings are impossible).
    """
    for _ in range(MAX_TRIES // 20):
        layout = Layout()
        for name in names:  # one object at a time, each redrawn until it clears those already placed
            for _ in range(20):
                candidate = layout.with_poses({name: _draw(rng, name, center, jitter_m, yaw_jitter_rad)})
                if separated(candidate, margin_m):
                    layout = candidate
                    break
        if len(layout.poses) == len(names) and constraint(layout):
            return layout
    raise ConfigError(
        f"could not sample a valid {what} for objects {list(names)} in {MAX_TRIES} tries: the objects do not fit the "
        f"workspace x={WORKSPACE_X}, y={WORKSPACE_Y} under the task's constraints; use fewer objects or distractors"
    )


def _draw(rng: np.random.Generator, name: str, center: Layout | None, jitter_m: float,
          yaw_jitter_rad: float) -> tuple[float, float, float]:
    if center is not None and name in center.poses:
        x, y, yaw = center.poses[name]
        return (x + rng.uniform(-jitter_m, jitter_m), y + rng.uniform(-jitter_m, jitter_m),
                yaw + rng.uniform(-yaw_jitter_rad, yaw_jitter_rad))
    return rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y), rng.uniform(-np.pi, np.pi)


def add_distractors(rng: np.random.Generator, layout: Layout, count: int, constraint: Constraint) -> Layout:
    """Return `layout` plus `count` distractors, placed one by one where they keep clearances and the constraint.

    Distractors may stand anywhere in DISTRACTOR_AREA (wider than the workspace: they only need to be in view).

    Raises:
        ConfigError: more distractors than the scene has, or they cannot be placed.
    """
    if count > len(DISTRACTORS):
        raise ConfigError(f"{count} distractors requested but the scene has {len(DISTRACTORS)}; use at most that")
    for name in DISTRACTORS[:count]:
        for _ in range(MAX_TRIES):
            pose = (rng.uniform(*DISTRACTOR_AREA[0]), rng.uniform(*DISTRACTOR_AREA[1]), rng.uniform(-np.pi, np.pi))
            candidate = layout.with_poses({name: pose})
            if separated(candidate) and constraint(candidate):
                layout = candidate
                break
        else:
            raise ConfigError(
                f"could not place {name} around {sorted(layout.poses)} in {MAX_TRIES} tries; use fewer distractors"
            )
    return layout


def nominal_layout(task_name: str, names: Sequence[str], constraint: Constraint, margin_m: float) -> Layout:
    """The task's fixed demo-setting layout: drawn once from a generator seeded by the task name.

    The extra `margin_m` keeps every jittered copy of it (the `id` variation) valid with high probability.
    """
    rng = np.random.default_rng(zlib.crc32(task_name.encode()))
    layout = sample_layout(rng, names, constraint, margin_m=margin_m, what=f"nominal layout of {task_name}")
    # Tidy yaws: the demo setting has objects roughly square to the table.
    return Layout({n: (x, y, float(rng.uniform(-0.2, 0.2))) for n, (x, y, _) in layout.poses.items()})
