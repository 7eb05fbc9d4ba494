"""Recorded rollouts as a value-learning dataset: decisions with their samples, rewards, returns and successors.

Every decision of every episode becomes one row: the observation (cameras resized to the value function's size),
the instruction (an index into the dataset's instructions), the K sampled chunks' executed parts, which one ran,
the sparse reward (1 at the decision that ends a successful episode), whether it ends its episode, the Monte-Carlo
return, and the row of the next decision. Episodes are split into training and held-out ones by a stable hash of
their name, so the split does not change when more rollouts are added.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.processor_reference import NormalizationStats, resize_with_pad
from retain_ros.steering.rollouts import load_rollout, rollout_files


@dataclass
class ValueData:
    """Decision rows (N of them) of a set of episodes.

    Attributes:
        images: uint8 (N, C, H, W, 3).
        states: (N, state_dim) joints + gripper, robot units.
        instruction: (N,) index into `instructions`.
        instructions: the distinct instructions.
        candidates: float32 (N, K, E, D) executed parts of the K samples, robot units.
        chosen: (N,) the executed sample.
        rewards, dones, returns: (N,) float32.
        next_row: (N,) the next decision's row (itself at an episode's end; masked by `dones`).
        episode: (N,) episode index; success: (E,) per episode; held_out: (E,) bool per episode.
        noise_scale: the sampler noise scale of every episode's samples.
    """

    images: np.ndarray
    states: np.ndarray
    instruction: np.ndarray
    instructions: list[str]
    candidates: np.ndarray
    chosen: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    returns: np.ndarray
    next_row: np.ndarray
    episode: np.ndarray
    success: np.ndarray
    held_out: np.ndarray
    noise_scale: float

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    def rows(self, held_out: bool) -> np.ndarray:
        """Row indices of the training (False) or held-out (True) episodes."""
        return np.flatnonzero(self.held_out[self.episode] == held_out)

    def stats(self) -> NormalizationStats:
        """State and executed-action statistics of the training rows."""
        rows = self.rows(False)
        executed = self.candidates[rows, self.chosen[rows]].reshape(-1, self.candidates.shape[-1])
        return NormalizationStats.from_data(self.states[rows], executed)


def held_out_episode(name: str, fraction: float) -> bool:
    """Whether an episode (by file name) is held out: a stable hash below `fraction`."""
    return (zlib.crc32(name.encode("utf-8")) % 10_000) < fraction * 10_000


def load_value_data(directories: list[str | Path], cameras: tuple[str, ...], image_size: tuple[int, int],
                    executed_steps: int, discount: float, held_out: float = 0.1) -> ValueData:
    """Read every rollout file of `directories` into decision rows.

    Raises:
        ConfigError: no rollouts, a camera they lack, chunks shorter than `executed_steps`, different sample counts
            (K) or noise scales between episodes, or no success / no failure among the training episodes.
    """
    images, states, instr, cands, chosen, rewards, dones, returns, nxt, episode = ([] for _ in range(10))
    instructions: list[str] = []
    success, held, k_seen, noise, row0 = [], [], None, None, 0
    for i, path in enumerate(rollout_files(directories)):
        ep = load_rollout(path)
        missing = [c for c in cameras if c not in ep.images]
        if missing:
            raise ConfigError(f"{path} has cameras {sorted(ep.images)}, not {missing}; record with the cameras the "
                              "value function reads")
        n, k, h = ep.candidates.shape[:3]
        if h < executed_steps:
            raise ConfigError(f"{path} holds chunks of {h} actions; --executed-steps {executed_steps} needs at least "
                              "that many")
        if k_seen is not None and k != k_seen:
            raise ConfigError(f"{path} has {k} samples per decision, earlier rollouts {k_seen}; record every rollout "
                              "with the same --steering-samples")
        k_seen = k
        if noise is not None and ep.noise_scale != noise:
            raise ConfigError(f"{path} was sampled at noise scale {ep.noise_scale}, earlier rollouts at {noise}; train "
                              "a value function on rollouts of one --steering-noise")
        noise = ep.noise_scale
        if ep.instruction not in instructions:
            instructions.append(ep.instruction)
        images.append(np.stack([np.stack([resize_with_pad(ep.images[c][t], *image_size) for c in cameras])
                                for t in range(n)]))
        states.append(np.concatenate([ep.joint_positions, ep.gripper_position[:, None]], axis=1))
        instr.append(np.full(n, instructions.index(ep.instruction)))
        cands.append(ep.candidates[:, :, :executed_steps].astype(np.float32))
        chosen.append(ep.chosen)
        reward = np.zeros(n, np.float32)
        reward[-1] = float(ep.success)
        rewards.append(reward)
        done = np.zeros(n, np.float32)
        done[-1] = 1.0
        dones.append(done)
        returns.append(ep.returns(discount).astype(np.float32))
        nxt.append(row0 + np.minimum(np.arange(1, n + 1), n - 1))
        episode.append(np.full(n, i))
        success.append(ep.success)
        held.append(held_out_episode(path.name, held_out))
        row0 += n
    data = ValueData(np.concatenate(images), np.concatenate(states), np.concatenate(instr), instructions,
                     np.concatenate(cands), np.concatenate(chosen), np.concatenate(rewards), np.concatenate(dones),
                     np.concatenate(returns), np.concatenate(nxt), np.concatenate(episode), np.array(success),
                     np.array(held), float(noise))
    train_success = data.success[~data.held_out]
    if train_success.all() or not train_success.any():
        kind = "successes" if train_success.all() else "failures"
        raise ConfigError(f"the {len(train_success)} training episodes are all {kind}: a value function learns from "
                          "both; record more rollouts (e.g. --steering random at a "
                          "higher --steering-noise, or more tasks)")
    return data
