"""Running one expert episode and holding what it produced as arrays.

Step k pairs the observation taken at time k / rate with the action chosen from it, as DROID datasets do.

Noise injection (DART, Laskey et al. 2017): with `noise_rad_s` > 0 the arm executes the expert's action plus
temporally correlated noise, while the episode records the expert's clean action as the label, so the demonstrations
show how the expert recovers from the small errors a learnt policy makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retain_ros.droid_action import rad_s_to_droid
from retain_ros.sim.droid import ACTION_DIM
from retain_ros.sim.env import TabletopEnv
from retain_ros.sim.expert import ScriptedExpert
from retain_ros.sim.physics import ARM_DOF
from retain_ros.topics import FR3_FINGER_JOINTS


@dataclass
class Episode:
    """One recorded episode.

    Attributes:
        task: task name.
        variation: variation name.
        seed: episode seed.
        instruction: the language instruction.
        control_rate_hz: steps per second.
        success: whether the task's success detector fired (and held) by the end.
        observations: name -> array with a leading time axis of length num_steps.
        actions: (num_steps, 8) the expert's DROID actions (the labels; clean even under noise injection).
        executed_actions: (num_steps, 8) the actions the arm executed (labels + injected noise).
        noise_rad_s: standard deviation of the injected joint-velocity noise (0: none).
        arm_targets: (num_steps, 7) joint positions each action's JointTrajectory point commanded (rad).
        gripper_widths: (num_steps,) commanded gripper widths (m).
        rewards: (num_steps,) reward after each action.
        joint_efforts: (num_steps, 7) servo torques at each observation (N m).
        finger_velocities: (num_steps, 2) finger joint velocities at each observation (m/s).
    """

    task: str
    variation: str
    seed: int
    instruction: str
    control_rate_hz: float
    success: bool = False
    observations: dict[str, np.ndarray] = field(default_factory=dict)
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, ACTION_DIM)))
    executed_actions: np.ndarray = field(default_factory=lambda: np.zeros((0, ACTION_DIM)))
    noise_rad_s: float = 0.0
    arm_targets: np.ndarray = field(default_factory=lambda: np.zeros((0, ARM_DOF)))
    gripper_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0))
    joint_efforts: np.ndarray = field(default_factory=lambda: np.zeros((0, ARM_DOF)))
    finger_velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, len(FR3_FINGER_JOINTS))))

    @property
    def num_steps(self) -> int:
        """Number of (observation, action) pairs."""
        return int(len(self.actions))

    @property
    def times_s(self) -> np.ndarray:
        """Time of each observation since the episode start (s)."""
        return np.arange(self.num_steps) / self.control_rate_hz


NOISE_CORRELATION = 0.85  # per-step correlation of the injected noise (an AR(1) process, like a slow drift)


class CorrelatedNoise:
    """AR(1) joint-velocity noise with stationary standard deviation `sigma_rad_s`, from its own seeded generator."""

    def __init__(self, sigma_rad_s: float, size: int, seed: int, rho: float = NOISE_CORRELATION) -> None:
        self.sigma, self.rho = float(sigma_rad_s), rho
        self._rng = np.random.default_rng([int(seed), 0xDA27])  # independent of the episode's layout stream
        self._state = self._rng.normal(0.0, self.sigma, size) if self.sigma > 0 else np.zeros(size)

    def sample(self) -> np.ndarray:
        """The next noise vector (rad/s)."""
        if self.sigma > 0:
            innovation = self._rng.normal(0.0, self.sigma * np.sqrt(1.0 - self.rho**2), self._state.shape)
            self._state = self.rho * self._state + innovation
        return self._state.copy()


def run_expert_episode(env: TabletopEnv, seed: int, noise_rad_s: float = 0.0) -> Episode:
    """Reset `env` to `seed`, let the scripted expert act until the episode ends, and collect everything.

    Args:
        env: the environment (its config decides whether images are rendered).
        seed: episode seed.
        noise_rad_s: standard deviation of correlated joint-velocity noise added to the executed actions (DART);
            the recorded labels stay the expert's clean actions.

    Returns:
        The episode; `success` tells whether the expert solved it.
    """
    obs = env.reset(seed)
    expert = ScriptedExpert(env.task.expert_plan(env.physics))
    noise = CorrelatedNoise(noise_rad_s, ARM_DOF, seed)
    dt_s = env.config.physics.control_dt_s
    rows: dict[str, list[np.ndarray]] = {name: [] for name in obs}
    actions, executed, targets, widths, rewards, efforts, finger_v = [], [], [], [], [], [], []
    success = False
    while True:
        for name, value in obs.items():
            rows[name].append(value)
        efforts.append(env.physics.arm_efforts())
        finger_v.append(env.physics.finger_velocities())
        label = expert.act(env.physics)
        command = label.copy()
        command[:ARM_DOF] += rad_s_to_droid(noise.sample(), dt_s)
        result = env.step(command)
        actions.append(label)
        executed.append(result.action)
        targets.append(result.arm_command.points[-1].positions)
        widths.append(result.gripper_width_m)
        rewards.append(result.reward)
        success = result.success
        obs = result.observation
        if result.done:
            break
    return Episode(
        task=env.task.name, variation=env.task.variation.name, seed=int(seed), instruction=env.instruction,
        control_rate_hz=env.config.physics.control_rate_hz, success=bool(success),
        observations={name: np.stack(values) for name, values in rows.items()},
        actions=np.stack(actions), executed_actions=np.stack(executed), noise_rad_s=float(noise_rad_s),
        arm_targets=np.stack(targets), gripper_widths=np.array(widths),
        rewards=np.array(rewards), joint_efforts=np.stack(efforts), finger_velocities=np.stack(finger_v),
    )
