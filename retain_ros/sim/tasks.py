"""Task interface and registry (a tagged set, like dm_control's SUITE).

A task places objects (`initialize_episode`), reports the robot's proprioception (`get_observation`), scores the state
(`get_reward` in [0, 1], 1 on success) and detects success (`is_success`). It also writes the scripted expert's plan.
All randomness comes from the numpy Generator handed to `initialize_episode`.

Tags: `generalist` (the pretraining suite) and `target` (new skills the generalist never saw).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np

from retain_ros.sim.droid import width_to_gripper_position
from retain_ros.sim.expert import Subgoal
from retain_ros.sim.layout import Layout, add_distractors, nominal_layout, sample_layout
from retain_ros.sim.physics import ARM_DOF, CUBES, PLATES, TabletopPhysics
from retain_ros.sim.variations import VariationConfig, apply_appearance, apply_viewpoint, unknown_name_error

GENERALIST = "generalist"
TARGET = "target"
TAGS = (GENERALIST, TARGET)
# Margin kept around the nominal layout so that the `id` jitter never breaks it.
_NOMINAL_MARGIN_M = 0.04

STATE_SPEC: dict[str, tuple[tuple[int, ...], type]] = {
    "joint_positions": ((ARM_DOF,), np.float64),
    "joint_velocities": ((ARM_DOF,), np.float64),
    "gripper_position": ((1,), np.float64),
    "finger_positions": ((2,), np.float64),
    "tcp_position": ((3,), np.float64),
}


class Task(abc.ABC):
    """One language-instructed tabletop task under one variation.

    Subclasses set `name`, `instruction`, `max_steps` and implement `is_success`, `progress` and `expert_plan`;
    they may narrow `constraint`.

    Args:
        variation: the episode variation to sample under.
    """

    name: str = ""
    instruction: str = ""
    max_steps: int = 150
    tags: frozenset[str] = frozenset()

    def __init__(self, variation: VariationConfig) -> None:
        self.variation = variation
        self.objects: tuple[str, ...] = CUBES + PLATES
        self._nominal: Layout | None = None
        self.initial_layout: Layout | None = None

    # ---------------------------------------------------------------------------------------------- to implement
    @abc.abstractmethod
    def is_success(self, physics: TabletopPhysics) -> bool:
        """Whether the task is accomplished in the current state."""

    @abc.abstractmethod
    def progress(self, physics: TabletopPhysics) -> float:
        """Shaped progress in [0, 1) used as reward before success."""

    @abc.abstractmethod
    def expert_plan(self, physics: TabletopPhysics) -> list[Subgoal]:
        """Subgoals that solve the task from the current (initial) state."""

    def constraint(self, layout: Layout) -> bool:
        """Task-specific layout check (paths clear, targets reachable); every layout is fine by default."""
        return True

    # ---------------------------------------------------------------------------------------------- the episode
    def initialize_episode(self, physics: TabletopPhysics, random_state: np.random.Generator) -> None:
        """Reset the scene and draw this episode's layout, distractors, appearance and viewpoint.

        Args:
            physics: the simulator; reset here.
            random_state: the episode's generator (the only source of randomness).

        Raises:
            ConfigError: the variation's settings cannot be satisfied for this task.
        """
        physics.reset()
        v = self.variation
        if v.wide_positions:
            layout = sample_layout(random_state, self.objects, self.constraint, what=f"{self.name} layout")
        else:
            layout = sample_layout(random_state, self.objects, self.constraint, center=self.nominal_layout(),
                                   jitter_m=v.position_jitter_m, yaw_jitter_rad=v.yaw_jitter_rad,
                                   what=f"{self.name} layout")
        if v.num_distractors:
            layout = add_distractors(random_state, layout, v.num_distractors, self.constraint)
        if v.appearance:
            apply_appearance(physics.model, random_state)
        if v.camera_azimuth_rad or v.camera_elevation_rad or v.camera_distance_scale or v.camera_fovy_deg:
            apply_viewpoint(physics.model, v, random_state)
        for name, (x, y, yaw) in layout.poses.items():
            physics.set_object_pose(name, (x, y), yaw)
        physics.forward()
        self.initial_layout = layout

    def nominal_layout(self) -> Layout:
        """The demo-setting layout (fixed per task)."""
        if self._nominal is None:
            self._nominal = nominal_layout(self.name, self.objects, self.constraint, _NOMINAL_MARGIN_M)
        return self._nominal

    def get_observation(self, physics: TabletopPhysics) -> dict[str, np.ndarray]:
        """Proprioception, as listed in STATE_SPEC (images are added by the environment)."""
        return {
            "joint_positions": physics.arm_positions(),
            "joint_velocities": physics.arm_velocities(),
            "gripper_position": np.array([width_to_gripper_position(physics.gripper_width())]),
            "finger_positions": physics.finger_positions(),
            "tcp_position": physics.tcp_position(),
        }

    def get_reward(self, physics: TabletopPhysics) -> float:
        """1.0 on success, otherwise shaped progress in [0, 0.9]."""
        if self.is_success(physics):
            return 1.0
        return float(np.clip(0.9 * self.progress(physics), 0.0, 0.9))


class TaskRegistry:
    """Task classes by name, each with tags."""

    def __init__(self) -> None:
        self._tasks: dict[str, type[Task]] = {}

    def add(self, *tags: str) -> Callable[[type[Task]], type[Task]]:
        """Class decorator registering a task under `tags`."""
        def register(cls: type[Task]) -> type[Task]:
            cls.tags = frozenset(tags)
            self._tasks[cls.name] = cls
            return cls
        return register

    def names(self, tag: str | None = None) -> list[str]:
        """Registered task names, optionally only those tagged `tag`."""
        if tag is not None and tag not in TAGS:
            raise unknown_name_error("tag", tag, list(TAGS))
        return [n for n, cls in self._tasks.items() if tag is None or tag in cls.tags]

    def get(self, name: str) -> type[Task]:
        """The task class called `name`.

        Raises:
            ConfigError: unknown name, with the valid names and the closest match.
        """
        if name not in self._tasks:
            raise unknown_name_error("task", name, self.names())
        return self._tasks[name]

    def resolve(self, names: Sequence[str]) -> list[str]:
        """Expand tag names (`generalist`, `target`, `all`) and check task names; keeps order, drops repeats."""
        out: list[str] = []
        for name in names:
            expanded = self.names() if name == "all" else self.names(name) if name in TAGS else [self.get(name).name]
            out.extend(n for n in expanded if n not in out)
        return out


SUITE = TaskRegistry()
