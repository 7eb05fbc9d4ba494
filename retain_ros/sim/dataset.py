"""The compact training dataset: one compressed .npz per episode plus an `index.json` describing them all.

Episode file keys (leading axis = control step, length T):
    exterior_image, wrist_image   uint8 (T, H, W, 3), rgb
    joint_positions, joint_velocities, joint_efforts   float64 (T, 7)   rad, rad/s, N m
    gripper_position   float64 (T, 1)   DROID convention, 0 open .. 1 closed
    finger_positions   float64 (T, 2)   m
    tcp_position       float64 (T, 3)   m
    actions            float64 (T, 8)   DROID: 7 normalised joint velocities + gripper position (the expert's labels)
    executed_actions   float64 (T, 8)   the actions executed (labels + injected noise; equal without noise)
    arm_targets        float64 (T, 7)   joint positions each action's trajectory point commanded (rad)
    gripper_widths     float64 (T,)     commanded gripper width (m)
    rewards            float64 (T,)
    times_s            float64 (T,)
    task, variation, instruction (str), seed (int), success (bool), control_rate_hz (float),
    noise_rad_s (float: standard deviation of the injected joint-velocity noise, 0 = none)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.sim.droid import ACTION_NAMES
from retain_ros.sim.episode import Episode
from retain_ros.topics import FR3_ARM_JOINTS

FORMAT = "retain_ros.sim.dataset/2"  # /2: DROID-normalised actions, executed_actions and noise_rad_s
INDEX_NAME = "index.json"
_META_KEYS = ("task", "variation", "instruction", "seed", "success", "control_rate_hz", "noise_rad_s")
_ARRAY_FIELDS = ("actions", "executed_actions", "arm_targets", "gripper_widths", "rewards", "joint_efforts",
                 "finger_velocities")


def episode_name(task: str, variation: str, seed: int) -> str:
    """File stem of an episode: `<task>-<variation>-<seed:06d>`."""
    return f"{task}-{variation}-{seed:06d}"


def save_episode(episode: Episode, path: Path) -> None:
    """Write one episode as a compressed .npz (see the module docstring for the keys)."""
    arrays = {name: value for name, value in episode.observations.items()}
    arrays.update({name: getattr(episode, name) for name in _ARRAY_FIELDS})
    arrays["times_s"] = episode.times_s
    meta = {key: np.array(getattr(episode, key)) for key in _META_KEYS}
    np.savez_compressed(path, **arrays, **meta)


def load_episode(path: Path) -> Episode:
    """Read an episode written by `save_episode`.

    Raises:
        ConfigError: the file is missing or not an episode file.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read episode file {path}: {exc}; pass a .npz written by retain-sim collect") from exc
    with data:
        missing = [k for k in _META_KEYS + _ARRAY_FIELDS if k not in data.files]
        if missing:
            raise ConfigError(f"{path} lacks {missing}; it is not a retain-sim episode file")
        reserved = set(_META_KEYS + _ARRAY_FIELDS) | {"times_s"}
        return Episode(
            task=str(data["task"]), variation=str(data["variation"]), seed=int(data["seed"]),
            instruction=str(data["instruction"]), control_rate_hz=float(data["control_rate_hz"]),
            success=bool(data["success"]), noise_rad_s=float(data["noise_rad_s"]),
            observations={k: data[k] for k in data.files if k not in reserved},
            **{name: data[name] for name in _ARRAY_FIELDS},
        )


def index_entry(episode: Episode, file: str, bag: str | None) -> dict[str, object]:
    """The index.json record of one episode."""
    return {
        "file": file, "bag": bag, "task": episode.task, "variation": episode.variation, "seed": episode.seed,
        "instruction": episode.instruction, "success": episode.success, "num_steps": episode.num_steps,
        "noise_rad_s": episode.noise_rad_s,
    }


def write_index(out_dir: Path, entries: Iterable[dict[str, object]], image_size: int, control_rate_hz: float) -> Path:
    """Write `index.json` into `out_dir`, episodes sorted by (task, variation, seed); returns its path."""
    episodes = sorted(entries, key=lambda e: (e["task"], e["variation"], e["seed"]))
    index = {
        "format": FORMAT,
        "control_rate_hz": control_rate_hz,
        "image_size": [image_size, image_size],
        "cameras": ["exterior_image", "wrist_image"],
        "joint_names": list(FR3_ARM_JOINTS),
        "action_names": list(ACTION_NAMES),
        "action_space": "droid_joint_velocity: 7 normalised joint velocities (0.2 rad x a per step, vector scaled to "
                        "max 1) + gripper position (0 open .. 1 closed)",
        "episodes": episodes,
    }
    path = out_dir / INDEX_NAME
    path.write_text(json.dumps(index, indent=1) + "\n")
    return path


def read_index(out_dir: Path) -> dict[str, object]:
    """Read a dataset's `index.json`.

    Raises:
        ConfigError: missing, unreadable, or another format.
    """
    path = Path(out_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; pass a directory written by retain-sim collect") from exc
    if index.get("format") != FORMAT:
        raise ConfigError(f"{path} has format {index.get('format')!r}, expected {FORMAT!r}")
    return index
