"""The simulated robot behind `sim_robot_node`, as plain logic: a TabletopEnv advanced in short ticks (no ROS).

One tick advances the physics by 1 / sim_rate_hz seconds (the physics timestep stays ~1/510 s whatever the rate), so
joint states come out at sim_rate_hz and cameras every `camera_every` ticks. Commands use the joint trajectory
controller's semantics (`retain_ros.sim.controller`): a new trajectory replaces the running one, anchored at the
measured state; header stamp 0 means now. The episode's own step counter counts ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.sim.controller import JointTrajectory, TrajectoryPoint, TrajectoryRejected
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.physics import PhysicsConfig

_PHYSICS_HZ = 510.0  # 15 Hz x 34 substeps: the timestep the scene is tuned for


@dataclass(frozen=True)
class SimRobotConfig:
    """Settings of the simulated robot.

    Attributes:
        sim_rate_hz: physics ticks per second of simulated time (joint states are published every tick).
        camera_rate_hz: camera frames per second (rounded to a whole number of ticks).
        image_size: square image side (pixels).
    """

    sim_rate_hz: float = 60.0
    camera_rate_hz: float = 15.0
    image_size: int = 128

    def __post_init__(self) -> None:
        if not 5.0 <= self.sim_rate_hz <= 255.0:
            raise ConfigError(f"sim_rate_hz={self.sim_rate_hz} must be in 5..255 Hz")
        if not 0.0 < self.camera_rate_hz <= self.sim_rate_hz:
            raise ConfigError(f"camera_rate_hz={self.camera_rate_hz} must be in (0, sim_rate_hz]")

    def physics(self) -> PhysicsConfig:
        """Physics settings with ~1/510 s timesteps and the set-point refreshed every 2 steps."""
        substeps = max(2, 2 * round(_PHYSICS_HZ / self.sim_rate_hz / 2))
        return PhysicsConfig(control_rate_hz=self.sim_rate_hz, substeps=substeps, servo_every=2)

    @property
    def camera_every(self) -> int:
        """Ticks between camera frames."""
        return max(1, round(self.sim_rate_hz / self.camera_rate_hz))


class SimRobot:
    """A TabletopEnv episode driven tick by tick.

    Args:
        config: robot settings.
        task: task name; variation: variation name; seed: episode seed.
    """

    def __init__(self, config: SimRobotConfig, task: str, variation: str = "id", seed: int = 0) -> None:
        self.config = config
        self.env: TabletopEnv | None = None
        self.ticks = 0
        self.rejected = 0
        self.last_rejection = ""
        self.time_ns = 0  # simulated time since start, never reset (a /clock must not run backwards)
        self.reset(task, variation, seed)

    def reset(self, task: str, variation: str, seed: int) -> None:
        """Start a new episode (a new environment when the task or variation changes).

        Raises:
            ConfigError: unknown task or variation, bad seed.
        """
        env = self.env
        if env is None or env.task.name != task or env.task.variation.name != variation:
            new_env = TabletopEnv(task, variation, EnvConfig(image_size=self.config.image_size,
                                                             physics=self.config.physics()))
            if env is not None:
                env.close()
            self.env = env = new_env
        env.reset(seed)
        self.ticks = 0

    @property
    def instruction(self) -> str:
        """The task's instruction."""
        return self.env.instruction

    @property
    def tick_s(self) -> float:
        """Simulated seconds per tick."""
        return 1.0 / self.config.sim_rate_hz

    def command_trajectory(self, names: list[str], times_s: np.ndarray, positions: np.ndarray,
                           velocities: np.ndarray | None, start_in_s: float | None) -> str | None:
        """Hand a trajectory to the controller; returns why it was rejected, or None.

        Args:
            names: joint names of the columns.
            times_s: time_from_start of each point (s).
            positions: (N, J) joint positions (rad).
            velocities: (N, J) joint velocities (rad/s), or None for positions only.
            start_in_s: start relative to now (None = now, from a zero header stamp).
        """
        points = tuple(TrajectoryPoint(positions[k], float(times_s[k]),
                                       None if velocities is None else velocities[k]) for k in range(len(times_s)))
        now = self.env.physics.time_s
        start = None if start_in_s is None else now + start_in_s
        try:
            self.env.command_trajectory(JointTrajectory(tuple(names), points, start))
        except TrajectoryRejected as exc:
            self.rejected += 1
            self.last_rejection = str(exc)
            return str(exc)
        return None

    def command_gripper_width(self, width_m: float) -> None:
        """Command the finger opening (m); the simulated gripper clips it; a non-finite value is ignored."""
        if np.isfinite(width_m):
            self.env.command_gripper_width(float(width_m))

    def tick(self) -> bool:
        """Advance one tick; returns True when the cameras are due this tick."""
        self.env.advance()
        self.ticks += 1
        self.time_ns += int(round(self.tick_s * 1e9))
        return self.ticks % self.config.camera_every == 0

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arm (positions, velocities, efforts)."""
        p = self.env.physics
        return p.arm_positions(), p.arm_velocities(), p.arm_efforts()

    def finger_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Finger (positions, velocities), metres."""
        p = self.env.physics
        return p.finger_positions(), p.finger_velocities()

    def episode(self) -> dict:
        """Task, seed, time, reward and success of the running episode."""
        env = self.env
        return {"task": env.task.name, "variation": env.task.variation.name, "seed": env.seed, "ticks": self.ticks,
                "sim_time_s": self.ticks * self.tick_s, "reward": env.task.get_reward(env.physics),
                "success": bool(env.task.is_success(env.physics)), "instruction": env.instruction,
                "rejected_commands": self.rejected}

    def close(self) -> None:
        """Release the renderer."""
        if self.env is not None:
            self.env.close()
