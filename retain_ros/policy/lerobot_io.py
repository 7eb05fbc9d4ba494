"""How the node's streams feed a LeRobot policy and how its output becomes a DROID action (numpy only).

A LeRobot checkpoint names its inputs after the dataset it was trained on (`observation.images.base_0_rgb`,
`observation.state` of some composition) and its output after that dataset's action (`action`, D numbers). The node
has named cameras, 7 joint positions, a gripper position and an instruction, and executes DROID actions (7 arm numbers
+ 1 gripper in [0, 1], 0 open .. 1 closed). `LeRobotIO` is the one place that says how the two line up; it is checked
against the policy's features when the checkpoint loads (`retain_ros.policy.lerobot_policy`), so a mismatch fails at
start-up with the policy's own names in the message, never mid-episode.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import ACTION_KINDS, DROID_DT_S, DROID_JOINT_VELOCITY, Observation

IMAGE_PREFIX = "observation.images."
JOINT_POSITIONS = "joint_positions"
GRIPPER_POSITION = "gripper_position"
GRIPPER_OPEN = "gripper_open"
# state component -> its length (joint count is the FR3's 7; the node checks the joint count itself)
STATE_COMPONENTS = {JOINT_POSITIONS: 7, GRIPPER_POSITION: 1, GRIPPER_OPEN: 1}
CLOSED_IS_1 = "closed_is_1"
OPEN_IS_1 = "open_is_1"
GRIPPER_CONVENTIONS = (CLOSED_IS_1, OPEN_IS_1)
ARM_DIM = 7  # the first ARM_DIM policy outputs drive fr3_joint1..7; output ARM_DIM is the gripper


def _choice(value: str, choices: Sequence[str], what: str, param: str) -> str:
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{param}: unknown {what} '{value}'{hint}; use one of {', '.join(choices)}")


@dataclass(frozen=True)
class LeRobotIO:
    """The mapping between the node's observation/action and one LeRobot policy's features.

    Attributes:
        images: node camera name (an `Observation.images` key) -> policy image feature (`observation.images.*`).
        state: components of `observation.state`, in order, from `joint_positions` (7, rad), `gripper_position`
            (1, DROID: 0 open .. 1 closed) and `gripper_open` (1, its complement: 1 open .. 0 closed); LeRobot pads
            the vector to the policy's `max_state_dim` itself.
        action: what the first 7 policy outputs are: `droid_joint_velocity` (DROID's normalised velocities, what
            pi0 / pi0.5 DROID checkpoints output: 0.2 rad x a per 15 Hz step), `joint_velocity` (rad/s) or
            `joint_position` (rad); output 7 is the gripper.
        gripper: the convention of the policy's gripper output, `closed_is_1` (DROID) or `open_is_1`.
        rate_hz: rate at which the policy's actions were recorded (DROID: 15 Hz); the chunk's `dt_s` is 1 / rate_hz.
    """

    images: Mapping[str, str]
    state: tuple[str, ...]
    action: str = DROID_JOINT_VELOCITY
    gripper: str = CLOSED_IS_1
    rate_hz: float = 1.0 / DROID_DT_S

    def __post_init__(self) -> None:
        images = dict(self.images)
        if not images:
            raise ConfigError("lerobot_images is empty; map at least one camera, e.g. "
                              "['exterior=observation.images.base_0_rgb']")
        for camera, key in images.items():
            if not camera or not isinstance(camera, str):
                raise ConfigError(f"lerobot_images: camera name {camera!r} must be a non-empty string")
            if not key.startswith(IMAGE_PREFIX) or len(key) == len(IMAGE_PREFIX):
                raise ConfigError(f"lerobot_images: '{camera}' maps to '{key}', not a LeRobot image feature; "
                                  f"image features are named {IMAGE_PREFIX}<name>")
        taken = list(images.values())
        doubled = sorted({k for k in taken if taken.count(k) > 1})
        if doubled:
            raise ConfigError(f"lerobot_images: {doubled} fed by more than one camera; map each policy image once")
        object.__setattr__(self, "images", MappingProxyType(images))
        state = tuple(self.state)
        if not state:
            raise ConfigError(f"lerobot_state is empty; list its components in order from "
                              f"{', '.join(STATE_COMPONENTS)} (DROID: joint_positions, gripper_position)")
        for part in state:
            _choice(part, list(STATE_COMPONENTS), "state component", "lerobot_state")
        object.__setattr__(self, "state", state)
        _choice(self.action, ACTION_KINDS, "action kind", "lerobot_action")
        _choice(self.gripper, GRIPPER_CONVENTIONS, "gripper convention", "lerobot_gripper")
        if not (np.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"lerobot rate_hz={self.rate_hz} must be a positive number (DROID: 15)")

    def __hash__(self) -> int:
        return hash((tuple(self.images.items()), self.state, self.action, self.gripper, self.rate_hz))

    @classmethod
    def from_params(cls, images: Sequence[str], state: Sequence[str], action: str, gripper: str,
                    rate_hz: float = 1.0 / DROID_DT_S) -> LeRobotIO:
        """Build the mapping from ROS parameter values (string arrays and strings).

        Args:
            images: `CAMERA=FEATURE` items, e.g. `exterior=observation.images.base_0_rgb`; a bare feature name
                (`exterior=base_0_rgb`) gets the `observation.images.` prefix.
            state: the state components in order (see the class docstring).
            action: `droid_joint_velocity`, `joint_velocity` or `joint_position`.
            gripper: `closed_is_1` or `open_is_1`.
            rate_hz: action rate of the policy (Hz).

        Raises:
            ConfigError: a malformed item or an unknown name, listing the valid choices.
        """
        if isinstance(images, str) or isinstance(state, str):
            raise ConfigError("lerobot_images and lerobot_state are string arrays, e.g. "
                              "['exterior=observation.images.base_0_rgb'] and ['joint_positions', 'gripper_position']")
        mapping: dict[str, str] = {}
        for item in images:
            camera, sep, key = str(item).partition("=")
            camera, key = camera.strip(), key.strip()
            if not sep or not camera or not key:
                raise ConfigError(f"lerobot_images: '{item}' is not CAMERA=FEATURE (e.g. "
                                  "exterior=observation.images.base_0_rgb)")
            if camera in mapping:
                raise ConfigError(f"lerobot_images: camera '{camera}' is mapped twice; give each camera once")
            mapping[camera] = key if key.startswith("observation.") else IMAGE_PREFIX + key
        return cls(mapping, tuple(str(s).strip() for s in state), str(action).strip(), str(gripper).strip(),
                   float(rate_hz))

    def to_params(self) -> dict[str, object]:
        """The parameter values that `from_params` turns back into this mapping."""
        return {"images": [f"{c}={k}" for c, k in self.images.items()], "state": list(self.state),
                "action": self.action, "gripper": self.gripper, "rate_hz": self.rate_hz}

    @property
    def camera_names(self) -> tuple[str, ...]:
        """The node cameras the policy reads, in mapping order."""
        return tuple(self.images)

    @property
    def state_dim(self) -> int:
        """Length of the state vector this mapping builds."""
        return sum(STATE_COMPONENTS[part] for part in self.state)

    def state_vector(self, obs: Observation) -> np.ndarray:
        """The policy's `observation.state` (float32) from an observation."""
        closed = float(obs.gripper_position)
        parts = {JOINT_POSITIONS: np.asarray(obs.joint_positions, dtype=np.float64).reshape(-1),
                 GRIPPER_POSITION: np.array([closed]), GRIPPER_OPEN: np.array([1.0 - closed])}
        return np.concatenate([parts[p] for p in self.state]).astype(np.float32)

    def droid_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy output (H, D >= 8) -> (H, 8): the 7 arm numbers and the gripper as 0 open .. 1 closed.

        Raises:
            ConfigError: fewer than 8 numbers per action.
        """
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] < ARM_DIM + 1:
            raise ConfigError(f"the policy outputs actions of shape {actions.shape}; the node needs (H, >= "
                              f"{ARM_DIM + 1}): {ARM_DIM} arm numbers then the gripper")
        out = actions[:, :ARM_DIM + 1].copy()
        if self.gripper == OPEN_IS_1:
            out[:, ARM_DIM] = 1.0 - out[:, ARM_DIM]
        return out


def check_features(io: LeRobotIO, image_keys: Sequence[str], state_dim: int | None, action_dim: int | None,
                   max_state_dim: int | None = None, source: str = "the policy") -> list[str]:
    """Check a mapping against a policy's features (plain names and sizes, so it needs no LeRobot).

    Args:
        io: the mapping.
        image_keys: the policy's image features (`config.image_features`).
        state_dim: size of its `observation.state` feature; None when the config declares none.
        action_dim: size of its `action` feature; None when the config declares none.
        max_state_dim: the policy's padded state size (a state without a declared feature must fit in it).
        source: names the checkpoint in messages.

    Returns:
        Warnings worth logging (policy images that no camera feeds).

    Raises:
        ConfigError: a camera mapped to an image the policy lacks, a state of the wrong length, or an action with
            fewer than 8 numbers; each message lists what the policy has and which parameter to change.
    """
    keys = list(image_keys)
    unknown = {c: k for c, k in io.images.items() if k not in keys}
    if unknown:
        hint = f" (e.g. {next(iter(unknown))}={keys[0]})" if keys else ""
        raise ConfigError(f"lerobot_images maps {dict(unknown)} but {source} has no such image feature; its image "
                          f"features are {keys}. Fix: set lerobot_images to CAMERA=FEATURE items using these "
                          f"names{hint}")
    if state_dim is not None and io.state_dim != state_dim:
        raise ConfigError(f"lerobot_state {list(io.state)} builds a state of {io.state_dim} numbers but {source}'s "
                          f"observation.state has {state_dim}. Fix: list the components it was trained with, from "
                          f"{', '.join(f'{k} ({n})' for k, n in STATE_COMPONENTS.items())}")
    if state_dim is None and max_state_dim is not None and io.state_dim > max_state_dim:
        raise ConfigError(f"lerobot_state {list(io.state)} builds a state of {io.state_dim} numbers but {source} "
                          f"takes at most {max_state_dim} (max_state_dim). Fix: list fewer components")
    if action_dim is not None and action_dim < ARM_DIM + 1:
        raise ConfigError(f"{source} outputs {action_dim} numbers per action; the node needs {ARM_DIM} arm numbers "
                          f"+ 1 gripper (DROID). Fix: use a policy trained on 7-joint + gripper actions")
    missing = [k for k in keys if k not in io.images.values()]
    return [f"{source} image feature(s) {missing} get no camera (LeRobot treats them as missing cameras); map one "
            "with lerobot_images if the policy was trained with it"] if missing else []


# DROID-style FR3 set-up as openpi/LeRobot pi0 DROID policies read it: exterior camera as the base view, wrist camera
# as the left wrist view, state = 7 joint positions + gripper position, actions = 7 DROID-normalised joint velocities
# (droid/robot_ik/robot_ik_solver.py) + gripper.
DROID_FR3_IO = LeRobotIO(images={"exterior": IMAGE_PREFIX + "base_0_rgb", "wrist": IMAGE_PREFIX + "left_wrist_0_rgb"},
                         state=(JOINT_POSITIONS, GRIPPER_POSITION), action=DROID_JOINT_VELOCITY,
                         gripper=CLOSED_IS_1)
