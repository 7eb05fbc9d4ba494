"""Recorded policy rollouts with their outcomes: what a value function learns from.

One compressed .npz per episode in a directory (`retain-eval sim --record DIR`), named
`<row>-<task>-<variation>-<seed:06d>.npz`. Leading axis = decision (one policy query, N of them):
    exterior_image, wrist_image   uint8 (N, H, W, 3)   what the policy saw
    joint_positions               float64 (N, 7)       rad
    gripper_position              float64 (N,)         DROID convention, 0 open .. 1 closed
    candidates                    float32 (N, K, H, D) the K sampled chunks, in the policy's action space
    chosen                        int64 (N,)           which one was executed
    env_steps                     int64 (N,)           control steps before the query
and the episode: format, row, task, variation, instruction, seed, success, steps, reward, steering, noise_scale.
Rewards are sparse: 1 for the decision that ends a successful episode, 0 otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import Observation
from retain_ros.steering.selection import Steered

FORMAT = "retain_ros.steering.rollouts/1"
_META = ("format", "row", "task", "variation", "instruction", "seed", "success", "steps", "reward", "steering",
         "noise_scale")


@dataclass
class RolloutEpisode:
    """One recorded episode (see the module docstring for the arrays)."""

    images: dict[str, np.ndarray]
    joint_positions: np.ndarray
    gripper_position: np.ndarray
    candidates: np.ndarray
    chosen: np.ndarray
    env_steps: np.ndarray
    row: str
    task: str
    variation: str
    instruction: str
    seed: int
    success: bool
    steps: int
    noise_scale: float

    @property
    def num_decisions(self) -> int:
        """Policy queries in the episode."""
        return int(self.chosen.shape[0])

    @property
    def executed(self) -> np.ndarray:
        """The executed chunks, (N, H, D)."""
        return self.candidates[np.arange(self.num_decisions), self.chosen]

    def returns(self, discount: float) -> np.ndarray:
        """Monte-Carlo return of each decision: discount^(decisions left) for a success, else 0."""
        left = np.arange(self.num_decisions)[::-1]
        return (discount ** left) * float(self.success)


class RolloutRecorder:
    """Collects one episode's decisions and writes it (`begin`, `add` per query, `end`)."""

    def __init__(self, out_dir: str | Path, row: str = ""):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.row = row
        self._rows: list[tuple[Observation, Steered, int]] = []

    def begin(self) -> None:
        """Start a new episode."""
        self._rows = []

    def add(self, obs: Observation, steered: Steered, env_step: int) -> None:
        """Record one query: what the policy saw, its samples and the executed one."""
        self._rows.append((obs, steered, env_step))

    def end(self, task: str, variation: str, record: dict, noise_scale: float | None) -> Path:
        """Write the episode with its outcome (`record` from `rollout`); returns the file."""
        if not self._rows:
            raise ConfigError("a recorded episode needs at least one policy query")
        obs0 = self._rows[0][0]
        arrays = {f"{c}_image": np.stack([o.images[c] for o, _, _ in self._rows]) for c in sorted(obs0.images)}
        arrays["joint_positions"] = np.stack([np.asarray(o.joint_positions, np.float64) for o, _, _ in self._rows])
        arrays["gripper_position"] = np.array([o.gripper_position for o, _, _ in self._rows], np.float64)
        arrays["candidates"] = np.stack([s.candidates for _, s, _ in self._rows]).astype(np.float32)
        arrays["chosen"] = np.array([s.index for _, s, _ in self._rows], np.int64)
        arrays["env_steps"] = np.array([step for _, _, step in self._rows], np.int64)
        meta = {"format": FORMAT, "row": self.row, "task": task, "variation": variation,
                "instruction": obs0.instruction, "seed": int(record["seed"]), "success": bool(record["success"]),
                "steps": int(record["steps"]), "reward": float(record["reward"]),
                "steering": self._rows[0][1].mode, "noise_scale": float(noise_scale or 0.0)}
        slug = re.sub(r"[^A-Za-z0-9.=,]+", "_", self.row).strip("_") or "policy"
        path = self.out_dir / f"{slug}-{task}-{variation}-{int(record['seed']):06d}.npz"
        np.savez_compressed(path, **arrays, **{k: np.array(v) for k, v in meta.items()})
        self._rows = []
        return path


def load_rollout(path: str | Path) -> RolloutEpisode:
    """Read one recorded episode.

    Raises:
        ConfigError: unreadable, or not a rollout file.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read rollout file {path}: {exc}; record rollouts with retain-eval sim --record "
                          "DIR") from None
    with data:
        if "format" not in data.files or str(data["format"]) != FORMAT:
            raise ConfigError(f"{path} is not a rollout file of format {FORMAT}; record rollouts with retain-eval sim "
                              "--record DIR")
        images = {k[: -len("_image")]: data[k] for k in data.files if k.endswith("_image")}
        return RolloutEpisode(images, data["joint_positions"], data["gripper_position"], data["candidates"],
                              data["chosen"], data["env_steps"], str(data["row"]), str(data["task"]),
                              str(data["variation"]), str(data["instruction"]), int(data["seed"]),
                              bool(data["success"]), int(data["steps"]), float(data["noise_scale"]))


def rollout_files(directories: list[str | Path]) -> list[Path]:
    """Every rollout file in the directories, sorted.

    Raises:
        ConfigError: a directory that does not exist or holds none.
    """
    files: list[Path] = []
    for directory in directories:
        path = Path(directory)
        found = sorted(path.glob("*.npz")) if path.is_dir() else []
        if not found:
            raise ConfigError(f"{path} holds no rollout files (*.npz); record some with retain-eval sim --record "
                              f"{path} --steering random")
        files += found
    return files
