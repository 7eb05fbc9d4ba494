"""Observations from recorded messages, built by the live node's own code (no rclpy).

The node's subscription callbacks convert each message with `retain_ros.ros.conversions` (images, joint states by
name, finger states -> gripper position) into a `StreamSet`, and its control thread assembles the `Observation` from
the freshest samples (`ControlLoop.observation`). `ObservationAssembler` feeds recorded messages through the same
functions, the same `StreamSet` (so the same freshness rules: a stale stream means no observation, as on the robot)
and the same assembly method, with the bag's log time standing in for the node clock.

Topic names, joint names and stream ages come from the node's parameter file (config/fr3_droid.yaml by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import Observation
from retain_ros.ros import conversions as conv
from retain_ros.gripper import gripper_position
from retain_ros.ros.control_loop import GRIPPER, INSTRUCTION, JOINTS, ControlLoop
from retain_ros.ros.streams import StreamSet
from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, Topics

NODE_NAME = "retain_policy"
DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "config" / "fr3_droid.yaml"
_T = Topics()


@dataclass(frozen=True)
class InputSettings:
    """The node parameters that decide how messages become observations (names as in the parameter file)."""

    camera_names: tuple[str, ...] = ("exterior", "wrist")
    camera_topics: tuple[str, ...] = (_T.exterior_image, _T.wrist_image)
    compressed_images: bool = False
    image_max_age_s: float = 0.5
    joint_states_topic: str = _T.joint_states
    joint_names: tuple[str, ...] = FR3_ARM_JOINTS
    joint_states_max_age_s: float = 0.25
    gripper_states_topic: str = _T.gripper_states
    gripper_joint_names: tuple[str, ...] = FR3_FINGER_JOINTS
    gripper_max_width_m: float = 0.08
    gripper_max_age_s: float = 0.5
    instruction_topic: str = _T.instruction
    instruction: str = ""
    command_topic: str = _T.arm_command
    gripper_command_topic: str = _T.gripper_command
    seed: int = 0
    group_preset: str = "auto"
    source: str = "built-in defaults"
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.camera_names) != len(self.camera_topics):
            raise ConfigError(f"{self.source}: camera_names has {len(self.camera_names)} entries but camera_topics "
                              f"{len(self.camera_topics)}; give one topic per camera")
        if not self.joint_names:
            raise ConfigError(f"{self.source}: joint_names is empty; list the arm joints in action order")

    @property
    def camera_topic(self) -> dict[str, str]:
        """Camera name -> topic."""
        return dict(zip(self.camera_names, self.camera_topics))

    @classmethod
    def from_file(cls, path: str | Path | None = None, **overrides: object) -> InputSettings:
        """Read the node's parameter file (`retain_policy: ros__parameters:`, or `/**:`).

        Args:
            path: the YAML file; None = config/fr3_droid.yaml of this package (built-in defaults if absent).
            **overrides: values that win over the file (e.g. instruction from the command line).

        Raises:
            ConfigError: the file is missing or unreadable, or has no ros__parameters section.
        """
        path = Path(path) if path else DEFAULT_PARAMS
        if not path.exists():
            if path == DEFAULT_PARAMS:
                return cls(**overrides)
            raise ConfigError(f"parameter file {path} does not exist; pass the node's --params file "
                              "(e.g. config/fr3_droid.yaml)")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"parameter file {path} is not valid YAML ({exc})") from None
        section = next((data[k] for k in (NODE_NAME, f"/{NODE_NAME}", "/**") if isinstance(data.get(k), dict)), None)
        params = (section or {}).get("ros__parameters")
        if not isinstance(params, dict):
            raise ConfigError(f"parameter file {path} has no '{NODE_NAME}: ros__parameters:' section")
        known = {f.name for f in fields(cls)} - {"source", "extra"}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, source=str(path), extra={k: v for k, v in params.items() if k not in known})


class ObservationAssembler:
    """Recorded messages -> the node's observations.

    Args:
        settings: topics, joint names and stream ages.
        cameras: the cameras the policy reads (each needs a topic in `settings`).

    Raises:
        ConfigError: a camera the policy reads has no topic.
    """

    def __init__(self, settings: InputSettings, cameras: tuple[str, ...]) -> None:
        missing = [c for c in cameras if c not in settings.camera_names]
        if missing:
            raise ConfigError(f"the policy reads cameras {list(cameras)} but camera_names ({settings.source}) is "
                              f"{list(settings.camera_names)}; add {missing} with a topic each")
        self.settings = settings
        self.cameras = tuple(cameras)
        max_age = {c: settings.image_max_age_s for c in cameras}
        max_age[JOINTS] = settings.joint_states_max_age_s
        if settings.gripper_states_topic:
            max_age[GRIPPER] = settings.gripper_max_age_s
        self.streams = StreamSet(max_age)
        # The node's control loop, used only for its observation assembly (it never starts a thread here).
        self._loop = ControlLoop(self.streams, self.cameras, None, None, lambda: 0, lambda done: None, 1.0,
                                 lambda: settings.instruction, lambda level, message: None)
        self._by_topic = {settings.camera_topic[c]: c for c in cameras}

    @property
    def topics(self) -> list[str]:
        """The input topics this assembler reads."""
        out = [self.settings.camera_topic[c] for c in self.cameras] + [self.settings.joint_states_topic]
        if self.settings.gripper_states_topic:
            out.append(self.settings.gripper_states_topic)
        if self.settings.instruction_topic:
            out.append(self.settings.instruction_topic)
        return out

    def reset(self) -> None:
        """Forget every sample (start of an episode)."""
        self.streams = StreamSet(self.streams.max_age_s)
        self._loop.streams = self.streams

    def feed(self, topic: str, msgtype: str, received_ns: int, msg: object) -> None:
        """Convert one message as the node's subscription callback for `topic` does (errors mark the stream bad)."""
        s = self.settings
        stream = self._by_topic.get(topic)
        try:
            if stream is not None:
                rgb = conv.compressed_to_rgb(msg) if msgtype.endswith("CompressedImage") else conv.image_to_rgb(msg)
                self.streams.put(stream, rgb, received_ns, conv.stamp_to_ns(msg.header.stamp))
            elif topic == s.joint_states_topic:
                stream = JOINTS
                q = conv.joint_positions(msg, s.joint_names)
                self.streams.put(JOINTS, q, received_ns, conv.stamp_to_ns(msg.header.stamp))
            elif topic == s.gripper_states_topic:
                stream = GRIPPER
                fingers = conv.joint_positions(msg, s.gripper_joint_names)
                self.streams.put(GRIPPER, gripper_position(fingers, s.gripper_max_width_m), received_ns,
                                 conv.stamp_to_ns(msg.header.stamp))
            elif topic == s.instruction_topic:
                self.streams.put(INSTRUCTION, msg.data, received_ns)
        except conv.ConversionError as exc:
            self.streams.fail(stream, str(exc))

    def problems(self, now_ns: int) -> dict[str, str]:
        """Why no observation can be built at `now_ns` (the node's freshness rules); empty when it can."""
        return self.streams.problems(now_ns)

    def observation(self, now_ns: int) -> Observation | None:
        """The observation the node would assemble at `now_ns`, or None when the node would not command.

        That is while a stream is missing or stale, or before the episode's first instruction: a camera frame logged
        between an episode marker and the instruction is skipped, as the node skips it (whether the bag has any
        instruction at all is checked before the replay starts).
        """
        samples, problems = self.streams.fresh(now_ns)
        if problems:
            return None
        try:
            obs, _ = self._loop.observation(samples, now_ns)
        except ConfigError:  # no instruction yet
            return None
        return obs
