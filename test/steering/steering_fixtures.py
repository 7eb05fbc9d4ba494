"""Small value-learning fixtures written through the real rollout recorder: rollouts whose outcome is a known
function of the executed chunk, so a value function has something definite to learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retain_ros.policy.interface import DROID_ACTION_SPACE, ActionChunk, Observation
from retain_ros.steering.rollouts import RolloutRecorder
from retain_ros.steering.selection import Steered

INSTRUCTIONS = ("pick up the red cube", "push the blue cube left")


def write_rollouts(out: Path, episodes: int = 24, decisions: int = 4, samples: int = 4, horizon: int = 10,
                   seed: int = 0, noise_scale: float = 0.5) -> Path:
    """Episodes whose success is decided by the sign of joint 1's velocity in their chunks (positive = success)."""
    rng = np.random.default_rng(seed)
    recorder = RolloutRecorder(out, "fixture")
    for e in range(episodes):
        recorder.begin()
        good = e % 2 == 0
        for t in range(decisions):
            images = {c: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in ("exterior", "wrist")}
            obs = Observation(images, rng.uniform(-1, 1, 7), float(t % 2), INSTRUCTIONS[(e // 2) % 2], 0)
            candidates = rng.uniform(-0.5, 0.5, (samples, horizon, 8)).astype(np.float32)
            candidates[..., 7] = 0.0
            index = int(rng.integers(samples))
            candidates[index, :, 0] = 0.5 if good else -0.5
            chunk = ActionChunk(candidates[index], 1 / 15, DROID_ACTION_SPACE, 0)
            recorder.add(obs, Steered(chunk, index, candidates, None, "random"), t * 8)
        recorder.end("pick_red", "id", {"seed": e, "success": good, "steps": decisions * 8, "reward": float(good)},
                     noise_scale)
    return out
