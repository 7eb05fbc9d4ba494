"""Recorded bags as DROID-style training episodes: the frames a policy sees and the DROID actions that were executed.

RETAIN finetunes on a few dozen demonstrations of the new task, recorded on the robot as rosbags (the node's topics,
or a plain franka_ros2 teleoperation: cameras, joint states, gripper states). Each bag (or each episode of it, split
at an episode-marker topic) becomes one episode of frames at the policy's rate: the images, the joint and gripper
state, read exactly as the node and `retain-eval bag` read them (`NodeInputs`), at every n-th frame of the first
camera.

The action of frame t is what the arm did until frame t + 1, in DROID's convention: the joint motion as DROID's
normalised velocity a = (q[t+1] - q[t]) / 0.2 rad (`rad_s_to_droid`; a DROID robot moves 0.2 rad x a per 15 Hz
step), clipped to [-1, 1], and the gripper command as DROID records it, 0 open .. 1 closed: 1 while the fingers
close or stay closed on something (a held cube leaves them at 0.4-0.5 of closed, which as a position would read as
"open" to the node's 0.5 threshold), 0 while they open or stay open (`gripper_commands`). The last frame has no
successor and is dropped. A gap in the frames (a stale stream, more than 1.5 frame periods) ends the episode there
and starts another: an action across a gap would be several steps' motion. `lerobot_dataset.write_dataset` writes the
episodes with LeRobot's own dataset classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.control.inputs import InputSettings, NodeInputs
from retain_ros.droid_action import rad_s_to_droid
from retain_ros.evaluate.bag_eval import check_inputs, read_episode
from retain_ros.evaluate.bag_reader import Bag, BagError
from retain_ros.evaluate.targets import JOINT_STATES, TargetBuilder


@dataclass
class ExportedEpisode:
    """One episode's frames and actions.

    Attributes:
        name: bag name (with `#i` when the bag was split).
        task: the instruction the frames were recorded under.
        images: camera name -> (T, H, W, 3) uint8 RGB.
        state: (T, 8) joint positions (rad) and gripper position (0 open .. 1 closed).
        actions: (T, 8) DROID-normalised joint velocities and the next gripper position.
        stamps_ns: (T,) log times of the frames.
    """

    name: str
    task: str
    images: dict[str, np.ndarray]
    state: np.ndarray
    actions: np.ndarray
    stamps_ns: np.ndarray


CLOSED_MIN = 0.1  # a steady gripper position above this holds something (or is shut): command 1
MOVING = 0.005  # a change of the gripper position per frame above this is the fingers moving


def gripper_commands(position: np.ndarray) -> np.ndarray:
    """(T-1,) DROID gripper commands (0 / 1) from (T,) gripper positions: closing or closed 1, opening or open 0."""
    step = np.diff(position)
    steady = (position[1:] > CLOSED_MIN).astype(np.float32)
    return np.where(step > MOVING, 1.0, np.where(step < -MOVING, 0.0, steady)).astype(np.float32)


def droid_actions(state: np.ndarray, dt_s: float) -> np.ndarray:
    """(T-1, 8) DROID actions from (T, 8) frame states: the joint motion to the next frame, the gripper command."""
    arm = np.clip(rad_s_to_droid(np.diff(state[:, :7], axis=0) / dt_s, dt_s), -1.0, 1.0)
    return np.concatenate([arm, gripper_commands(state[:, 7])[:, None]], axis=1).astype(np.float32)


def gap_free_runs(stamps_ns: np.ndarray, period_ns: float) -> list[slice]:
    """Runs of frames without a gap longer than 1.5 periods."""
    cuts = [0, *(np.flatnonzero(np.diff(stamps_ns) > 1.5 * period_ns) + 1).tolist(), len(stamps_ns)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:])]


def camera_rate_hz(bag: Bag, topic: str) -> float:
    """Messages per second on `topic` over the bag."""
    count = bag.topics.get(topic, ("", 0))[1]
    span_s = (bag.end_ns - bag.start_ns) * 1e-9
    if count < 2 or span_s <= 0:
        raise BagError(f"bag {bag.path} has {count} message(s) on {topic}: too few frames to export")
    return (count - 1) / span_s


def export_bag(path: str | Path, settings: InputSettings, fps: float, episode_topic: str = "") -> list[ExportedEpisode]:
    """The episodes of one bag at `fps` frames per second.

    Args:
        path: bag directory or storage file.
        settings: topic names, joint names and gripper width, as the node reads them (its params file); its
            `instruction`, when set, is every episode's task (else the bag's instruction topic).
        fps: frame rate of the dataset (DROID: 15); every n-th camera frame is kept, n = camera rate / fps.
        episode_topic: '' = one episode per bag; else each message on this topic starts an episode.

    Raises:
        BagError: a missing topic or joint, no instruction, or too few frames.
    """
    cameras = tuple(settings.camera_topic)
    assembler = NodeInputs(settings, cameras)
    out = []
    with Bag(path) as bag:
        check_inputs(bag, assembler, settings)
        rate = camera_rate_hz(bag, settings.camera_topic[cameras[0]])
        every = max(1, round(rate / fps))
        if abs(rate / every - fps) > 0.1 * fps:
            raise BagError(f"bag {bag.path}: the camera {cameras[0]} runs at {rate:.1f} Hz, which gives no "
                           f"{fps:g} fps by keeping every n-th frame. Fix: --fps {rate / every:.0f}")
        for episode in bag.episodes(episode_topic):
            builder = TargetBuilder(JOINT_STATES, settings.joint_names, settings.gripper_joint_names,
                                    settings.gripper_max_width_m, 1.0 / fps)
            observations = read_episode(bag, episode, assembler, builder, "", every).observations
            stamps = np.array([o.stamp_ns for o in observations], np.int64)
            segments = [seg for seg in gap_free_runs(stamps, every / rate * 1e9) if seg.stop - seg.start >= 2]
            if not segments:
                raise BagError(f"episode {episode.name} has no two consecutive complete frames: nothing to export")
            for part, seg in enumerate(segments):
                frames = observations[seg]
                state = np.array([[*o.joint_positions, o.gripper_position] for o in frames], np.float64)
                out.append(ExportedEpisode(
                    episode.name if len(segments) == 1 else f"{episode.name}@{part}", frames[0].instruction,
                    {cam: np.stack([o.images[cam] for o in frames[:-1]]) for cam in cameras},
                    state[:-1].astype(np.float32), droid_actions(state, 1.0 / fps), stamps[seg][:-1]))
    return out
