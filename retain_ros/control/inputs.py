"""The policy node's inputs: messages -> stream samples -> the policy's Observation (no rclpy).

The node's subscription callbacks call `NodeInputs.on_image` / `on_joints` / `on_gripper` / `on_instruction` with the
node clock, and its control thread assembles the observation with `NodeInputs.assemble`. `retain-eval bag` and
`retain-eval replay` feed recorded messages to the same methods (`feed`, with the bag's log time standing in for the
node clock) and the same `StreamSet` freshness rules, so a replayed observation is built by the code the node runs.
`InputSettings` are the node's parameters that decide this, with the node's defaults (`retain_ros.control.params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml

from retain_ros.control import messages
from retain_ros.control.params import BY_NAME
from retain_ros.control.streams import StreamSet
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_position
from retain_ros.policy.interface import Observation

NODE_NAME = "retain_policy"
JOINTS, GRIPPER, INSTRUCTION = "joint_states", "gripper_states", "instruction"


def _default(name: str):
    """The node's default for parameter `name` (lists as tuples: the settings are frozen)."""
    value = BY_NAME[name].default
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class InputSettings:
    """The node parameters that decide how messages become observations (names and defaults as the node's)."""

    camera_names: tuple[str, ...] = _default("camera_names")
    camera_topics: tuple[str, ...] = _default("camera_topics")
    compressed_images: bool = _default("compressed_images")
    image_max_age_s: float = _default("image_max_age_s")
    joint_states_topic: str = _default("joint_states_topic")
    joint_names: tuple[str, ...] = _default("joint_names")
    joint_states_max_age_s: float = _default("joint_states_max_age_s")
    gripper_states_topic: str = _default("gripper_states_topic")
    gripper_joint_names: tuple[str, ...] = _default("gripper_joint_names")
    gripper_max_width_m: float = _default("gripper_max_width_m")
    gripper_max_age_s: float = _default("gripper_max_age_s")
    instruction_topic: str = _default("instruction_topic")
    instruction: str = _default("instruction")
    command_topic: str = _default("command_topic")
    gripper_command_topic: str = _default("gripper_command_topic")
    seed: int = _default("seed")
    group_preset: str = _default("group_preset")
    source: str = "the node's parameter defaults"
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
    def from_params(cls, params: Mapping[str, object], source: str = "the node's parameters",
                    **overrides: object) -> InputSettings:
        """Settings from parameter values by name (others are kept in `extra`); `overrides` that are not None win."""
        known = {f.name for f in fields(cls)} - {"source", "extra"}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, source=source, extra={k: v for k, v in params.items() if k not in known})

    @classmethod
    def from_file(cls, path: str | Path | None = None, **overrides: object) -> InputSettings:
        """Read the node's parameter file (`retain_policy: ros__parameters:`, or `/**:`).

        Args:
            path: the YAML file; None = the node's defaults (config/fr3_droid.yaml repeats them).
            **overrides: values that win over the file (e.g. instruction from the command line).

        Raises:
            ConfigError: the file is missing or unreadable, or has no ros__parameters section.
        """
        if path is None:
            return cls.from_params({}, cls.source, **overrides)
        path = Path(path)
        if not path.exists():
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
        return cls.from_params(params, str(path), **overrides)


class NodeInputs:
    """Messages -> stream samples -> observations, as the node does it.

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
        self._by_topic = {settings.camera_topic[c]: c for c in cameras}

    @property
    def topics(self) -> list[str]:
        """The input topics the node subscribes to."""
        out = [self.settings.camera_topic[c] for c in self.cameras] + [self.settings.joint_states_topic]
        if self.settings.gripper_states_topic:
            out.append(self.settings.gripper_states_topic)
        if self.settings.instruction_topic:
            out.append(self.settings.instruction_topic)
        return out

    def reset(self) -> None:
        """Forget every sample (start of an episode)."""
        self.streams = StreamSet(self.streams.max_age_s)

    # ------------------------------------------------------------------------------ one method per subscription
    # Each returns None, or the conversion problem (the stream is then marked bad until its next good message).
    def on_image(self, camera: str, msg, now_ns: int) -> str | None:
        """A camera frame (sensor_msgs/Image or CompressedImage)."""
        return self._put(camera, lambda: (messages.compressed_to_rgb(msg) if hasattr(msg, "format")
                                          else messages.image_to_rgb(msg)), msg, now_ns)

    def on_joints(self, msg, now_ns: int) -> str | None:
        """The arm's sensor_msgs/JointState: the `joint_names` positions and velocities (`messages.JointReading`)."""
        return self._put(JOINTS, lambda: messages.joint_reading(msg, self.settings.joint_names), msg, now_ns)

    def on_gripper(self, msg, now_ns: int) -> str | None:
        """The fingers' sensor_msgs/JointState -> DROID gripper position (0 open .. 1 closed)."""
        s = self.settings
        return self._put(GRIPPER, lambda: gripper_position(messages.joint_positions(msg, s.gripper_joint_names),
                                                           s.gripper_max_width_m), msg, now_ns)

    def on_instruction(self, text: str, now_ns: int) -> None:
        """The instruction topic's std_msgs/String data."""
        self.streams.put(INSTRUCTION, text, now_ns)

    def _put(self, stream: str, convert, msg, now_ns: int) -> str | None:
        try:
            self.streams.put(stream, convert(), now_ns, messages.stamp_to_ns(msg.header.stamp))
        except messages.ConversionError as exc:
            self.streams.fail(stream, str(exc))
            return str(exc)
        return None

    def feed(self, topic: str, now_ns: int, msg) -> str | None:
        """A recorded message on `topic`, handled by the subscription the node has for that topic."""
        s = self.settings
        if topic in self._by_topic:
            return self.on_image(self._by_topic[topic], msg, now_ns)
        if topic == s.joint_states_topic:
            return self.on_joints(msg, now_ns)
        if topic == s.gripper_states_topic:
            return self.on_gripper(msg, now_ns)
        if topic == s.instruction_topic:
            self.on_instruction(msg.data, now_ns)
        return None

    # ------------------------------------------------------------------------------ observations
    def assemble(self, samples: dict, observed_ns: int, instruction: str = "") -> tuple[Observation, int]:
        """The policy's Observation from fresh stream samples (`StreamSet.fresh`), and the newest camera stamp (ns).

        Args:
            samples: stream name -> sample.
            observed_ns: the observation time (node clock).
            instruction: the `instruction` parameter; when empty, the instruction topic's last message.

        Raises:
            ConfigError: no instruction from the parameter or the topic.
        """
        images = {cam: samples[cam].value for cam in self.cameras}
        image_stamp = max(samples[cam].stamp_ns for cam in self.cameras)
        gripper = samples[GRIPPER].value if GRIPPER in samples else 0.0
        text = instruction or (samples[INSTRUCTION].value if INSTRUCTION in samples else "")
        if not text:
            raise ConfigError("no instruction: set the `instruction` parameter or publish on instruction_topic")
        return Observation(images, np.asarray(samples[JOINTS].value.positions, np.float64), float(gripper), text,
                           observed_ns), image_stamp

    def current_instruction(self, instruction: str = "") -> str:
        """The instruction the next observation will carry: the parameter when set, else the topic's last message."""
        if instruction:
            return instruction
        sample = self.streams.snapshot().get(INSTRUCTION)
        return sample.value if sample is not None else ""

    def problems(self, now_ns: int) -> dict[str, str]:
        """Why no observation can be built at `now_ns` (the node's freshness rules); empty when it can."""
        return self.streams.problems(now_ns)

    def observation(self, now_ns: int) -> Observation | None:
        """The observation the node would assemble at `now_ns`, or None when the node would not command.

        That is while a stream is missing or stale, or before the episode's first instruction: a camera frame logged
        between an episode marker and the instruction is skipped, as the node skips it (whether a bag has any
        instruction at all is checked before a replay starts).
        """
        samples, problems = self.streams.fresh(now_ns)
        if problems:
            return None
        try:
            return self.assemble(samples, now_ns, self.settings.instruction)[0]
        except ConfigError:  # no instruction yet
            return None
