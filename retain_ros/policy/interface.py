"""The Policy interface every backend implements: observation in, action chunk out, numpy only (no rclpy).

The node (`ros/`), the offline and simulated evaluation (`evaluate/`) and training (`train/`) all talk to a policy
through these types, so they see the same preprocessing and the same action convention.

Action convention (DROID; droid/robot_ik/robot_ik_solver.py `joint_velocity_to_delta`): one action is 8 numbers,
7 NORMALISED joint velocities a (fr3_joint1..7) followed by 1 absolute gripper position in [0, 1] (0 open .. 1
closed); a chunk holds `horizon` of them, `dt_s` = 1/15 s apart. Each step moves the joint target
DROID_MAX_JOINT_DELTA_RAD * a from the measured position, after scaling the whole 7-vector so that its largest entry is
at most 1 (a = 1 asks for 0.2 rad per 1/15 s, 3 rad/s nominal). Policies clip a to [-1, 1] and binarise the gripper at
0.5. The kinds 'joint_velocity' (rad/s) and 'joint_position' (rad) serve other policies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from retain_ros.droid_action import (  # noqa: F401  (re-exported: the policy-facing names)
    ACTION_KINDS, DROID_DT_S, DROID_JOINT_VELOCITY, JOINT_POSITION, VELOCITY_KINDS)
from retain_ros.errors import ConfigError
from retain_ros.policy.registry import POLICIES
from retain_ros.topics import FR3_ARM_JOINTS

if TYPE_CHECKING:  # annotations only: the parameter table and the launch files import this module without torch
    import torch


@dataclass
class Observation:
    """One synchronized observation of the robot.

    Attributes:
        images: camera name -> uint8 HxWx3 RGB image (any size; the policy resizes with padding).
        joint_positions: (7,) measured arm joint positions in rad (fr3_joint1..7).
        gripper_position: DROID convention, 0 open .. 1 closed.
        instruction: the language instruction.
        stamp_ns: time the observation was taken (ns); copied into the resulting chunk.
    """

    images: Mapping[str, np.ndarray]
    joint_positions: np.ndarray
    gripper_position: float
    instruction: str
    stamp_ns: int = 0


@dataclass(frozen=True)
class ActionSpace:
    """What the numbers of an action mean.

    Attributes:
        kind: 'droid_joint_velocity' (DROID's normalised a, see the module docstring), 'joint_velocity' (rad/s) or
            'joint_position' (rad) for the arm part.
        dim: numbers per action (7 joints + 1 gripper = 8).
        gripper_index: position of the absolute gripper command (0 open .. 1 closed).
        joint_names: the arm joints, in action order.
        arm_low: lower clip bound of the arm part (DROID: -1).
        arm_high: upper clip bound of the arm part (DROID: +1).
        gripper_threshold: the gripper output is binarised at this value (DROID: 0.5); None keeps it continuous.
    """

    kind: str = DROID_JOINT_VELOCITY
    dim: int = 8
    gripper_index: int = 7
    joint_names: tuple[str, ...] = FR3_ARM_JOINTS
    arm_low: float = -1.0
    arm_high: float = 1.0
    gripper_threshold: float | None = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ConfigError(f"action space kind '{self.kind}' is unknown; use one of {', '.join(ACTION_KINDS)}")
        if self.dim != len(self.joint_names) + 1 or self.gripper_index != len(self.joint_names):
            raise ConfigError(f"action space dim={self.dim}, gripper_index={self.gripper_index} do not fit "
                              f"{len(self.joint_names)} joints + 1 gripper; use dim={len(self.joint_names) + 1}, "
                              f"gripper_index={len(self.joint_names)}")
        if not self.arm_low < self.arm_high:
            raise ConfigError(f"action space arm_low={self.arm_low} must be below arm_high={self.arm_high}")

    def clip(self, actions: np.ndarray) -> np.ndarray:
        """Clip the arm part and binarise the gripper (DROID convention); returns a float32 copy.

        Args:
            actions: (..., dim) actions.
        """
        out = np.array(actions, dtype=np.float32, copy=True)
        arm = [i for i in range(self.dim) if i != self.gripper_index]
        out[..., arm] = np.clip(out[..., arm], self.arm_low, self.arm_high)
        gripper = np.clip(out[..., self.gripper_index], 0.0, 1.0)
        if self.gripper_threshold is not None:
            gripper = (gripper > self.gripper_threshold).astype(np.float32)
        out[..., self.gripper_index] = gripper
        return out

    def to_dict(self) -> dict:
        """JSON-able form (stored in a checkpoint's config.json)."""
        return {"kind": self.kind, "dim": self.dim, "gripper_index": self.gripper_index,
                "joint_names": list(self.joint_names), "arm_low": self.arm_low, "arm_high": self.arm_high,
                "gripper_threshold": self.gripper_threshold}

    @classmethod
    def from_dict(cls, data: Mapping) -> ActionSpace:
        """Inverse of `to_dict` (validated)."""
        return cls(**{**data, "joint_names": tuple(data.get("joint_names", FR3_ARM_JOINTS))})


DROID_ACTION_SPACE = ActionSpace()


@dataclass
class ActionChunk:
    """A sequence of actions to execute one after the other.

    Attributes:
        actions: (H, D) float32 in `space`.
        dt_s: time between consecutive actions (s).
        space: what the numbers mean.
        observation_stamp_ns: stamp of the observation the chunk was computed from (latency compensation).
    """

    actions: np.ndarray
    dt_s: float
    space: ActionSpace
    observation_stamp_ns: int

    @property
    def horizon(self) -> int:
        """Number of actions in the chunk."""
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class PolicySpec:
    """What a caller needs to know to feed a policy and execute its output.

    Attributes:
        camera_names: cameras `Observation.images` must hold, in the order the model reads them.
        image_size: (height, width) the model sees; other sizes are resized with padding.
        action_space: the meaning of each output number.
        horizon: actions per chunk.
        dt_s: time between actions (s).
        num_joints: joints `Observation.joint_positions` must hold.
    """

    camera_names: tuple[str, ...]
    image_size: tuple[int, int]
    action_space: ActionSpace = field(default_factory=ActionSpace)
    horizon: int = 10
    dt_s: float = DROID_DT_S
    num_joints: int = 7


@runtime_checkable
class Policy(Protocol):
    """An observation -> action-chunk policy with swappable weights (the live-merge path).

    Live merges use spare copies of the weights: the node writes the merge into a spare copy (`weight_targets`)
    off the control thread, then `promote_standby` makes it serve in one reference swap between two chunks; spare
    copies that keep other merges (the recipe cache) serve again by the same swap.
    A backend may set `execution_mode` ('chunk' or 'stream'): how the node executes its chunks when its
    `execution_mode` parameter is 'auto' (absent: 'chunk'). A backend may implement
    `sample_chunks(obs, k, noise_scale=None, seed=None) -> list[ActionChunk]`: K chunks from one batched forward, the
    first being `predict`'s (value-guided steering; see `can_sample`).
    """

    spec: PolicySpec

    def predict(self, obs: Observation) -> ActionChunk:
        """Compute the action chunk for one observation.

        Raises:
            ConfigError: the observation does not match `spec` (missing camera, wrong dtype, wrong joint count).
        """

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The weight tensors of the serving model under their checkpoint names (read-only views)."""

    def weight_targets(self, which: str = "standby") -> dict[str, list[torch.Tensor]]:
        """Checkpoint name -> the tensors holding that weight in one copy of the model.

        'serving': only while no predict runs (a policy no one runs yet, or an in-place merge, which keeps predicts
        out). Any other name: that spare copy, which no predict runs on (made on first use; 'standby' is the live
        merge's, the recipe cache names more).
        """

    def promote_standby(self, which: str = "standby") -> None:
        """Make spare copy `which` serve from the next predict on; the serving copy becomes spare `which`."""

    def release_standby(self, which: str | None = None) -> None:
        """Free spare copy `which` (None: every spare copy)."""

    def spare_copies(self) -> tuple[str, ...]:
        """The names of the spare copies that exist now."""

    def load_merged(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Swap ALL weights in one step (e.g. `MergedWeights.tensors`); a concurrent `predict` sees old or new only.

        Raises:
            ConfigError: missing/extra names or wrong shapes; the previous weights keep serving.
        """


def can_sample(policy: object) -> bool:
    """Whether `policy` draws several chunks per observation (value-guided steering).

    True when it has `sample_chunks` and does not say otherwise: a remote policy whose server cannot sets
    `can_sample` False.
    """
    return callable(getattr(policy, "sample_chunks", None)) and bool(getattr(policy, "can_sample", True))


def validate_observation(obs: Observation, spec: PolicySpec) -> None:
    """Check an observation against a policy's spec.

    Raises:
        ConfigError: naming the problem (missing camera, bad image dtype/shape, joint count, gripper value) and the fix.
    """
    if not isinstance(obs, Observation):
        raise ConfigError(f"predict() takes a retain_ros.policy.Observation, got {type(obs).__name__}")
    missing = [c for c in spec.camera_names if c not in obs.images]
    if missing:
        raise ConfigError(f"observation lacks camera image(s) {missing}; the policy needs {list(spec.camera_names)} "
                          f"(got {sorted(obs.images)}). Fix: map your camera topics to these names")
    for name in spec.camera_names:
        image = obs.images[name]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            dtype = getattr(image, "dtype", type(image).__name__)
            raise ConfigError(f"camera '{name}' image has dtype {dtype}; the policy needs uint8 HxWx3 RGB. Fix: "
                              "convert the image (e.g. encoding rgb8) before calling predict")
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ConfigError(f"camera '{name}' image has shape {image.shape}; the policy needs HxWx3 RGB (3 channels, "
                              "channel last). Fix: drop alpha / convert mono or bgr to rgb8")
    joints = np.asarray(obs.joint_positions)
    if joints.shape != (spec.num_joints,):
        raise ConfigError(f"joint_positions has shape {joints.shape}; the policy needs ({spec.num_joints},) arm joint "
                          f"positions in rad ({', '.join(spec.action_space.joint_names)}). Fix: check joint_names")
    if not np.all(np.isfinite(joints)):
        raise ConfigError(f"joint_positions contains non-finite values {joints.tolist()}")
    gripper = float(obs.gripper_position)
    if not (np.isfinite(gripper) and -0.05 <= gripper <= 1.05):
        raise ConfigError(f"gripper_position={gripper} is outside [0, 1] (DROID: 0 open .. 1 closed). Fix: convert "
                          "the finger width with 1 - width / max_width")
    if not isinstance(obs.instruction, str):
        raise ConfigError(f"instruction must be a str, got {type(obs.instruction).__name__}")


def load_policy(checkpoint_dir: str | Path, device: str = "cpu", **kwargs: object) -> Policy:
    """Load a policy from a checkpoint directory; the backend is chosen by config.json's `type`.

    Args:
        checkpoint_dir: directory with config.json + model.safetensors (+ normalisation stats).
        device: torch device for inference.
        **kwargs: backend-specific options (e.g. `seed` for the reference VLA's sampling noise).

    Raises:
        ConfigError: missing/unreadable config, unknown type (lists the known ones), incompatible weights.
    """
    return POLICIES.load(checkpoint_dir, device=device, **kwargs)
