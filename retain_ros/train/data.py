"""Training samples from `retain-sim collect` datasets: images, state, instruction and the next H actions.

Sample i of an episode pairs observation i with actions i .. i+H-1; past the episode's end the last action repeats
(the arm holds its final command). Only successful expert episodes are used. Images are resized with padding to the
model's size once, at load time, and kept as uint8 in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.processor_reference import resize_with_pad
from retain_ros.sim.dataset import load_episode, read_index

log = logging.getLogger(__name__)


@dataclass
class DemoSet:
    """All samples of one or more datasets, as arrays with a leading sample axis.

    Attributes:
        images: uint8 (N, C, H, W, 3), cameras in the model's order, at the model's image size.
        states: float64 (N, 8) joint positions + gripper position.
        action_chunks: float32 (N, H, 8) DROID actions.
        instructions: N instruction strings.
        tasks: N task names.
        episodes: number of episodes the samples come from.
        phases: (N,) each sample's position in its episode, step / length in [0, 1).
    """

    images: np.ndarray
    states: np.ndarray
    action_chunks: np.ndarray
    instructions: list[str]
    tasks: list[str]
    episodes: int
    phases: np.ndarray

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def describe(self) -> str:
        """One line: samples, episodes, tasks."""
        return f"{len(self)} samples from {self.episodes} episodes of {len(set(self.tasks))} task(s)"


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """(T, D) actions -> (T, H, D): row i holds actions i .. i+H-1, the last action repeated past the end."""
    t = actions.shape[0]
    index = np.minimum(np.arange(t)[:, None] + np.arange(horizon)[None, :], t - 1)
    return actions[index]


def load_demos(dirs: Sequence[str | Path], config: ReferenceVLAConfig, max_episodes: int | None = None,
               skip_episodes: int = 0) -> DemoSet:
    """Load every successful episode of the given dataset directories.

    Args:
        dirs: directories written by `retain-sim collect` (each with index.json).
        config: the model config (cameras, image size, horizon).
        max_episodes: use at most this many episodes per directory (in index order).
        skip_episodes: skip this many successful episodes per directory first (held-out splits).

    Raises:
        ConfigError: a directory is not a dataset, lacks a camera, or holds no successful episode.
    """
    images, states, chunks, instructions, tasks, phases, count = [], [], [], [], [], [], 0
    h, w = config.image_size
    for directory in dirs:
        index = read_index(Path(directory))
        successful = [e for e in index["episodes"] if e["success"]][skip_episodes:]
        entries = successful[:max_episodes]
        for entry in entries:
            episode = load_episode(Path(directory) / entry["file"])
            obs = episode.observations
            cams = []
            for name in config.camera_names:
                key = f"{name}_image"
                if key not in obs:
                    raise ConfigError(f"{directory}/{entry['file']} has no '{key}'; the model reads cameras "
                                      f"{list(config.camera_names)}. Collect with images (retain-sim collect)")
                frames = obs[key]
                if frames.shape[1:3] != (h, w):
                    frames = np.stack([resize_with_pad(f, h, w) for f in frames])
                cams.append(frames)
            images.append(np.stack(cams, axis=1))
            states.append(np.concatenate([obs["joint_positions"], obs["gripper_position"]], axis=1))
            chunks.append(action_chunks(np.asarray(episode.actions, np.float32), config.horizon))
            instructions += [episode.instruction] * episode.num_steps
            tasks += [episode.task] * episode.num_steps
            phases.append(np.arange(episode.num_steps) / episode.num_steps)
            count += 1
    if not count:
        raise ConfigError(f"no successful episodes in {list(map(str, dirs))}; collect demonstrations with "
                          "`retain-sim collect` first")
    return DemoSet(np.concatenate(images), np.concatenate(states), np.concatenate(chunks), instructions, tasks, count,
                   np.concatenate(phases))
