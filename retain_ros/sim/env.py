"""The tabletop environment: one task under one variation, stepped with DROID actions at 15 Hz.

Each `step` turns the action into a one-point JointTrajectory (see `droid.py`), hands it to the trajectory controller
(which replaces the running trajectory, anchored at the measured state), commands the gripper width, and runs the
physics for one control period with the controller's set-point refreshed every `servo_every` physics steps.
Lower-level `command_trajectory` / `command_gripper_width` / `advance` serve a ROS node that receives
JointTrajectory messages directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mujoco
import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.sim import task_suite  # noqa: F401  (registers the tasks)
from retain_ros.sim.controller import JointTrajectory, JointTrajectoryController
from retain_ros.sim.droid import action_to_trajectory, gripper_position_to_width, validate_action
from retain_ros.sim.gl_order import load_before_gl
from retain_ros.sim.physics import CAMERAS, Q_MAX, Q_MIN, PhysicsConfig, TabletopPhysics
from retain_ros.sim.tasks import STATE_SPEC, SUITE, Task
from retain_ros.sim.variations import VariationConfig, get_variation
from retain_ros.topics import FR3_ARM_JOINTS

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 128
_MAX_IMAGE_SIZE = 480  # the scene's offscreen buffer is 640 x 480


@dataclass(frozen=True)
class EnvConfig:
    """Environment settings.

    Attributes:
        image_size: square camera image side in pixels (both cameras).
        render: render camera images into observations (off for fast expert checks).
        shadows: render shadows; off by default: on Mesa's CPU renderer they cost ~4x the rest of a frame
            (measured ~25 vs ~6 ms at 128 px) and add little at policy image sizes.
        success_hold_steps: consecutive successful steps that end an episode.
        max_steps: episode length limit in control steps; None uses the task's own.
        physics: simulation rates.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    render: bool = True
    shadows: bool = False
    success_hold_steps: int = 3
    max_steps: int | None = None
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= _MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size={self.image_size} is impossible: use 16..{_MAX_IMAGE_SIZE} pixels (the offscreen "
                f"buffer is 640x480; {DEFAULT_IMAGE_SIZE} is the default)"
            )
        if self.success_hold_steps < 1:
            raise ConfigError(f"success_hold_steps={self.success_hold_steps} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps={self.max_steps} must be >= 1 (or None for the task's default)")


@dataclass
class StepResult:
    """What one control step produced.

    Attributes:
        observation: the observation after the step.
        reward: task reward in [0, 1].
        success: the task's success detector after the step.
        done: the episode is over (success held, or the step limit reached).
        action: the action as executed (scaled as DROID does), or None for a `tick` without one.
        arm_command: the trajectory sent to the controller (None for a `tick` without one).
        gripper_width_m: the gripper width commanded (a `tick` without one: the measured width).
    """

    observation: dict[str, np.ndarray]
    reward: float
    success: bool
    done: bool
    action: np.ndarray | None
    arm_command: JointTrajectory | None
    gripper_width_m: float


def make_task(name: str, variation: str | VariationConfig = "id") -> Task:
    """Instantiate a registered task under a variation (by name or config).

    Raises:
        ConfigError: unknown task or variation name.
    """
    config = get_variation(variation) if isinstance(variation, str) else variation
    return SUITE.get(name)(config)


class TabletopEnv:
    """A task in the simulated FR3 tabletop.

    Args:
        task: task name (see `retain-sim list`) or a Task instance.
        variation: variation name or config.
        config: environment settings.
    """

    def __init__(self, task: str | Task, variation: str | VariationConfig = "id",
                 config: EnvConfig | None = None) -> None:
        self.config = config or EnvConfig()
        self.task = make_task(task, variation) if isinstance(task, str) else task
        self.physics = TabletopPhysics(self.config.physics)
        self.controller = JointTrajectoryController(FR3_ARM_JOINTS, Q_MIN, Q_MAX)
        self._renderer: mujoco.Renderer | None = None
        self.seed: int | None = None
        self.num_steps = 0
        self._success_streak = 0

    @property
    def instruction(self) -> str:
        """The task's language instruction."""
        return self.task.instruction

    @property
    def max_steps(self) -> int:
        """Episode length limit in control steps."""
        return self.config.max_steps or self.task.max_steps

    def observation_spec(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """Name -> (shape, dtype) of every observation entry."""
        spec = dict(STATE_SPEC)
        if self.config.render:
            size = self.config.image_size
            spec.update({f"{cam}_image": ((size, size, 3), np.uint8) for cam in CAMERAS})
        return spec

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        """Start the episode identified by `seed` (same task, variation and seed -> same episode)."""
        if int(seed) < 0:
            raise ConfigError(f"seed={seed} must be a non-negative integer")
        self.seed = int(seed)
        self.task.initialize_episode(self.physics, np.random.default_rng(self.seed))
        self.controller.hold(self.physics.arm_positions())
        self.physics.set_arm_setpoint(self.physics.arm_positions(), np.zeros(len(FR3_ARM_JOINTS)))
        self.num_steps = 0
        self._success_streak = 0
        return self.observation()

    def step(self, action: np.ndarray) -> StepResult:
        """Execute one DROID action for one control period.

        Args:
            action: 7 normalised joint velocities (DROID convention) + gripper position (0 open .. 1 closed).

        Returns:
            The step's result.

        Raises:
            ConfigError: malformed action.
        """
        action = validate_action(action)
        trajectory = action_to_trajectory(action, self.physics.arm_positions(), self.config.physics.control_dt_s)
        self.command_trajectory(trajectory)
        width = gripper_position_to_width(action[-1])
        self.command_gripper_width(width)
        return self.tick(action, trajectory, width)

    def tick(self, action: np.ndarray | None = None, arm_command: JointTrajectory | None = None,
             gripper_width_m: float | None = None) -> StepResult:
        """Run one control period with whatever the controllers were last commanded, then score the state.

        This is `step` without the command: a caller that sends multi-point trajectories itself (as the policy node
        does) ticks the episode with it. The optional arguments are only echoed into the result.
        """
        self.advance()
        success = self.task.is_success(self.physics)
        self._success_streak = self._success_streak + 1 if success else 0
        done = self._success_streak >= self.config.success_hold_steps or self.num_steps >= self.max_steps
        return StepResult(self.observation(), self.task.get_reward(self.physics), success, done, action,
                          arm_command, self.physics.gripper_width() if gripper_width_m is None else gripper_width_m)

    def command_trajectory(self, trajectory: JointTrajectory) -> None:
        """Send a trajectory to the arm controller (replaces the running one).

        Raises:
            TrajectoryRejected: the controller refused it; the previous trajectory keeps running.
        """
        p = self.physics
        self.controller.command(trajectory, p.time_s, p.arm_positions(), p.arm_velocities())

    def command_gripper_width(self, width_m: float) -> None:
        """Command the finger opening in metres (0 .. 0.08)."""
        self.physics.set_gripper_width(width_m)

    def advance(self) -> None:
        """Run the physics for one control period, tracking the controller's set-point."""
        cfg = self.config.physics
        for _ in range(cfg.substeps // cfg.servo_every):
            q_des, dq_des = self.controller.sample(self.physics.time_s)
            self.physics.set_arm_setpoint(q_des, dq_des)
            self.physics.step(cfg.servo_every)
        self.num_steps += 1

    def observation(self) -> dict[str, np.ndarray]:
        """Proprioception plus, when rendering, both camera images (uint8 HxWx3)."""
        obs = self.task.get_observation(self.physics)
        if self.config.render:
            for cam in CAMERAS:
                obs[f"{cam}_image"] = self.render(cam)
        return obs

    def render(self, camera: str) -> np.ndarray:
        """Render one camera ('exterior' or 'wrist') at the configured size."""
        if camera not in CAMERAS:
            raise ConfigError(f"unknown camera '{camera}'; cameras: {', '.join(CAMERAS)}")
        if self._renderer is None:
            size = self.config.image_size
            load_before_gl()  # the first GL context loads Mesa's LLVM; triton's must be loaded before it (gl_order.py)
            try:
                self._renderer = mujoco.Renderer(self.physics.model, size, size)
            except mujoco.FatalError as exc:
                raise ConfigError(
                    f"offscreen rendering failed ({exc}); set MUJOCO_GL=egl before mujoco is first imported "
                    "(export it, or import retain_ros.sim first) and install the Debian packages in apt-packages.txt"
                ) from exc
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(self.config.shadows)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._renderer.update_scene(self.physics.data, camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> TabletopEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
