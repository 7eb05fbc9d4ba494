"""The tabletop tasks: a generalist suite (pick, place, push, stack) and target tasks the generalist never saw.

Success detectors use the true state: heights relative to the table, distances to plate centres, and finger contacts
(a placed or stacked cube must be released).
"""

from __future__ import annotations

import numpy as np

from retain_ros.sim.expert import PAD_OFFSET_M, Subgoal, pick, place, push
from retain_ros.sim.layout import WORKSPACE_X, WORKSPACE_Y, Layout, corridor_clear
from retain_ros.sim.physics import CUBE_HALF_SIZE_M, PLATE_RADIUS_M, TABLE_HEIGHT_M, TabletopPhysics
from retain_ros.sim.tasks import GENERALIST, SUITE, TARGET, Task

LIFT_HEIGHT_M = 0.08  # a picked cube's centre must be this far above its resting height
RESTING_Z_M = TABLE_HEIGHT_M + CUBE_HALF_SIZE_M
PLACE_RELEASE_Z_M = RESTING_Z_M + 0.008  # TCP height at which a carried cube is let go over the table
STACK_RELEASE_Z_M = RESTING_Z_M + 2 * CUBE_HALF_SIZE_M + 0.008
PUSH_DISTANCE_M = 0.10  # how far a push task must move its cube
_INSIDE_MARGIN_M = 0.025  # a cube counts as on a plate when its centre is this far inside the rim
_PUSHER_CLEARANCE_M = 0.10  # free space behind a pushed cube for the fingers
_CORRIDOR_HALF_WIDTH_M = 0.03
# Where the pusher may start (x range, y range; m): low poses closer to the base fold the arm against its limits.
_PUSHER_AREA = ((0.36, 0.68), (-0.28, 0.28))


def _pusher_reachable(start: np.ndarray, unit: np.ndarray) -> bool:
    x, y = start - unit * (PAD_OFFSET_M + 0.03)
    return bool(_PUSHER_AREA[0][0] <= x <= _PUSHER_AREA[0][1] and _PUSHER_AREA[1][0] <= y <= _PUSHER_AREA[1][1])


def _closeness(distance_m: float, scale_m: float = 0.1) -> float:
    """1 at distance 0, decaying towards 0."""
    return float(np.exp(-max(distance_m, 0.0) / scale_m))


def _resting(physics: TabletopPhysics, cube: str) -> bool:
    return physics.object_position(cube)[2] < RESTING_Z_M + 0.01


def _on_plate(physics: TabletopPhysics, cube: str, plate: str) -> bool:
    d = np.linalg.norm(physics.object_position(cube)[:2] - physics.object_position(plate)[:2])
    return bool(d < PLATE_RADIUS_M - _INSIDE_MARGIN_M and _resting(physics, cube))


def _colour(name: str) -> str:
    return name.split("_", 1)[1]


class PickTask(Task):
    """Lift one cube."""

    cube = "cube_red"
    max_steps = 110

    def is_success(self, physics: TabletopPhysics) -> bool:
        lifted = physics.object_position(self.cube)[2] > RESTING_Z_M + LIFT_HEIGHT_M
        return bool(lifted and physics.touching_gripper(self.cube))

    def progress(self, physics: TabletopPhysics) -> float:
        reach = _closeness(np.linalg.norm(physics.tcp_position() - physics.object_position(self.cube)))
        lift = np.clip((physics.object_position(self.cube)[2] - RESTING_Z_M) / LIFT_HEIGHT_M, 0.0, 1.0)
        return 0.4 * reach + 0.6 * lift

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        return pick(self.cube)


class PlaceTask(Task):
    """Put one cube on one plate."""

    cube = "cube_red"
    plate = "plate_yellow"
    max_steps = 190

    def is_success(self, physics: TabletopPhysics) -> bool:
        return _on_plate(physics, self.cube, self.plate) and not physics.touching_gripper(self.cube)

    def progress(self, physics: TabletopPhysics) -> float:
        cube = physics.object_position(self.cube)
        reach = _closeness(np.linalg.norm(physics.tcp_position() - cube))
        carry = _closeness(np.linalg.norm(cube[:2] - physics.object_position(self.plate)[:2]))
        return 0.3 * reach + 0.7 * carry

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        return pick(self.cube) + place(lambda p: p.object_position(self.plate)[:2], PLACE_RELEASE_Z_M)


class StackTask(Task):
    """Put one cube on top of another."""

    cube = "cube_red"
    base = "cube_blue"
    max_steps = 190

    def is_success(self, physics: TabletopPhysics) -> bool:
        top, base = physics.object_position(self.cube), physics.object_position(self.base)
        aligned = np.linalg.norm(top[:2] - base[:2]) < CUBE_HALF_SIZE_M
        on_top = abs(top[2] - base[2] - 2 * CUBE_HALF_SIZE_M) < 0.01
        return bool(aligned and on_top and _resting(physics, self.base) and not physics.touching_gripper(self.cube))

    def progress(self, physics: TabletopPhysics) -> float:
        top, base = physics.object_position(self.cube), physics.object_position(self.base)
        reach = _closeness(np.linalg.norm(physics.tcp_position() - top))
        goal = base + np.array([0.0, 0.0, 2 * CUBE_HALF_SIZE_M])
        return 0.3 * reach + 0.7 * _closeness(np.linalg.norm(top - goal))

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        return pick(self.cube) + place(lambda p: p.object_position(self.base)[:2], STACK_RELEASE_Z_M)


class PushTask(Task):
    """Slide one cube along a direction on the table, without lifting it."""

    cube = "cube_green"
    direction = (0.0, 1.0)
    max_steps = 180

    def _goal(self, start_xy: np.ndarray) -> np.ndarray:
        return start_xy + np.asarray(self.direction) * (PUSH_DISTANCE_M + 0.025)

    def constraint(self, layout: Layout) -> bool:
        start = layout.xy(self.cube)
        unit = np.asarray(self.direction)
        end = self._goal(start)
        in_table = (WORKSPACE_X[0] - 0.04 <= end[0] <= WORKSPACE_X[1] + 0.04
                    and WORKSPACE_Y[0] - 0.06 <= end[1] <= WORKSPACE_Y[1] + 0.06)
        pusher_start = start - unit * _PUSHER_CLEARANCE_M
        return in_table and _pusher_reachable(start, unit) and corridor_clear(
            layout, self.cube, pusher_start, end, _CORRIDOR_HALF_WIDTH_M)

    def _displacement(self, physics: TabletopPhysics) -> float:
        start = self.initial_layout.xy(self.cube)
        return float((physics.object_position(self.cube)[:2] - start) @ np.asarray(self.direction))

    def is_success(self, physics: TabletopPhysics) -> bool:
        return self._displacement(physics) >= PUSH_DISTANCE_M and _resting(physics, self.cube)

    def progress(self, physics: TabletopPhysics) -> float:
        reach = _closeness(np.linalg.norm(physics.tcp_position() - physics.object_position(self.cube)))
        return 0.3 * reach + 0.7 * float(np.clip(self._displacement(physics) / PUSH_DISTANCE_M, 0.0, 1.0))

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        goal = self._goal(physics.object_position(self.cube)[:2])
        return push(self.cube, lambda p: goal)


class PushToPlateTask(Task):
    """Slide one cube onto a plate without lifting it.

    The expert pushes along x first, then along y (two straight pushes are reliable where one diagonal push of a
    cube is not); layouts keep both legs of that path clear.
    """

    cube = "cube_red"
    plate = "plate_purple"
    max_steps = 300
    _MIN_LEG_M = 0.03  # shorter legs are skipped

    def _legs(self, start: np.ndarray, goal: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        corner = np.array([goal[0], start[1]])
        legs = [(start, corner), (corner, goal)]
        return [(a, b) for a, b in legs if np.linalg.norm(b - a) >= self._MIN_LEG_M]

    def constraint(self, layout: Layout) -> bool:
        start, goal = layout.xy(self.cube), layout.xy(self.plate)
        if not 0.12 <= float(np.linalg.norm(goal - start)) <= 0.24:
            return False
        for a, b in self._legs(start, goal):
            unit = (b - a) / np.linalg.norm(b - a)
            if not (_pusher_reachable(a, unit) and corridor_clear(
                    layout, self.cube, a - unit * _PUSHER_CLEARANCE_M, b, _CORRIDOR_HALF_WIDTH_M)):
                return False
        return True

    def is_success(self, physics: TabletopPhysics) -> bool:
        return _on_plate(physics, self.cube, self.plate)

    def progress(self, physics: TabletopPhysics) -> float:
        cube = physics.object_position(self.cube)
        reach = _closeness(np.linalg.norm(physics.tcp_position() - cube))
        return 0.3 * reach + 0.7 * _closeness(np.linalg.norm(cube[:2] - physics.object_position(self.plate)[:2]))

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        start, goal = physics.object_position(self.cube)[:2], physics.object_position(self.plate)[:2]
        plan: list[Subgoal] = []
        for _, leg_end in self._legs(start, goal):
            plan += push(self.cube, lambda p, end=leg_end: end, tol_m=0.012)
        return plan


class PlaceBothTask(Task):
    """Put two cubes on the same plate, side by side."""

    cubes = ("cube_red", "cube_blue")
    plate = "plate_yellow"
    max_steps = 330
    _SLOT_OFFSET_M = 0.036

    def is_success(self, physics: TabletopPhysics) -> bool:
        return all(_on_plate(physics, c, self.plate) and not physics.touching_gripper(c) for c in self.cubes)

    def progress(self, physics: TabletopPhysics) -> float:
        plate = physics.object_position(self.plate)[:2]
        return float(np.mean([_closeness(np.linalg.norm(physics.object_position(c)[:2] - plate)) for c in self.cubes]))

    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        plan: list[Subgoal] = []
        for sign, cube in zip((1.0, -1.0), self.cubes):
            def slot(p: TabletopPhysics, sign: float = sign) -> np.ndarray:
                # Side by side along x: the fingers open roughly along y, so they clear the first cube.
                return p.object_position(self.plate)[:2] + np.array([sign * self._SLOT_OFFSET_M, 0.0])
            plan += pick(cube) + place(slot, PLACE_RELEASE_Z_M)
        return plan


def _define(parent: type[Task], tag: str, name: str, instruction: str, **attrs: object) -> type[Task]:
    cls = type(f"{''.join(w.title() for w in name.split('_'))}Task", (parent,),
               {"name": name, "instruction": instruction, "__doc__": f"{instruction.capitalize()}.", **attrs})
    return SUITE.add(tag)(cls)


for _cube in ("cube_red", "cube_green", "cube_blue"):
    _define(PickTask, GENERALIST, f"pick_{_colour(_cube)}", f"pick up the {_colour(_cube)} cube", cube=_cube)
for _cube, _plate in (("cube_red", "plate_yellow"), ("cube_blue", "plate_yellow"), ("cube_green", "plate_purple")):
    _define(PlaceTask, GENERALIST, f"place_{_colour(_cube)}_on_{_colour(_plate)}",
            f"put the {_colour(_cube)} cube on the {_colour(_plate)} plate", cube=_cube, plate=_plate)
_define(PushTask, GENERALIST, "push_green_left", "push the green cube to the left", cube="cube_green",
        direction=(0.0, 1.0))
_define(PushTask, GENERALIST, "push_blue_forward", "push the blue cube away from the robot", cube="cube_blue",
        direction=(1.0, 0.0))
_define(StackTask, GENERALIST, "stack_red_on_blue", "stack the red cube on the blue cube", cube="cube_red",
        base="cube_blue")
_define(StackTask, GENERALIST, "stack_blue_on_green", "stack the blue cube on the green cube", cube="cube_blue",
        base="cube_green")
_define(PushToPlateTask, TARGET, "push_red_to_purple", "push the red cube onto the purple plate", cube="cube_red",
        plate="plate_purple")
_define(PlaceBothTask, TARGET, "place_red_and_blue_on_yellow", "put the red cube and the blue cube on the yellow plate")
