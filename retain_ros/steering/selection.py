"""Choosing which of K sampled chunks to execute: the step the node and `retain-eval sim` share.

Modes: 'none' (the policy's own chunk, `predict`), 'value' (V-GPS: argmax of the value function's Q over K samples
from one batched forward), 'random' (one of the K samples, uniformly: the data-collection policy and the control that
tells a value function's choice from the sampling spread alone). Sample 0 is the policy's own chunk, so K = 1 is
unsteered and a value function that prefers it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import ActionChunk, Observation, Policy, can_sample
from retain_ros.steering.value_function import ValueFunction

STEERING_MODES = ("none", "value", "random")


@dataclass(frozen=True)
class Steered:
    """One steering step's outcome.

    Attributes:
        chunk: the chunk to execute.
        index: which sample it is (0 = the policy's own).
        candidates: every sample, (K, H, D) in the policy's action space.
        values: Q of each sample (mode 'value'), else None.
        mode: the steering mode that chose it.
    """

    chunk: ActionChunk
    index: int
    candidates: np.ndarray
    values: np.ndarray | None
    mode: str

    @property
    def value(self) -> float | None:
        """Q of the executed chunk (None unless scored)."""
        return None if self.values is None else float(self.values[self.index])

    @property
    def spread(self) -> float | None:
        """The range (max - min) of Q over the samples: how much the choice mattered to the value function."""
        return None if self.values is None else float(self.values.max() - self.values.min())


def check_samples(policy: Policy, samples: int) -> None:
    """Check that `policy` can draw `samples` chunks in one forward.

    Raises:
        ConfigError: samples < 1, or a backend without `sample_chunks` (names it and the fix).
    """
    if samples < 1:
        raise ConfigError(f"steering_samples={samples} must be >= 1")
    if samples > 1 and not can_sample(policy):
        raise ConfigError(f"the policy backend {type(policy).__name__} cannot draw several chunks per observation "
                          "(no sample_chunks); use steering none with it")


class Steerer:
    """Draws and chooses chunks for one steering setting.

    Args:
        mode: one of STEERING_MODES.
        samples: K, chunks drawn per observation ('value' and 'random').
        value: the value function ('value' mode).
        noise_scale: the sampler's noise scale of samples 1..K-1 (None: the value function's, else the policy's).
        seed: the sampling noise seed of the first step; every step advances it, so a run is repeatable.
    """

    def __init__(self, mode: str = "none", samples: int = 10, value: ValueFunction | None = None,
                 noise_scale: float | None = None, seed: int = 0):
        if mode not in STEERING_MODES:
            raise ConfigError(f"steering '{mode}' is unknown; use one of {', '.join(STEERING_MODES)}")
        if mode == "value" and value is None:
            raise ConfigError("steering value needs a value function (steering_checkpoint / --steering-checkpoint)")
        if samples < 1:
            raise ConfigError(f"steering samples={samples} must be >= 1")
        self.mode, self.samples, self.value = mode, int(samples), value
        if noise_scale is None and value is not None:
            noise_scale = value.config.sample_noise_scale
        self.noise_scale = noise_scale
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def reseed(self, seed: int) -> None:
        """Restart the sampling noise and the random choices from `seed` (one episode's)."""
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def choose(self, policy: Policy, obs: Observation) -> Steered:
        """Draw the samples for `obs` and choose one.

        Raises:
            ConfigError: the policy refuses the observation, cannot sample, or the value function does not fit it.
        """
        if self.mode == "none" or self.samples == 1:
            chunk = policy.predict(obs)
            values = self.value.score(obs, chunk.actions[None]) if self.mode == "value" else None
            return Steered(chunk, 0, chunk.actions[None], values, self.mode)
        check_samples(policy, self.samples)
        seed = int(self._rng.integers(2**31))
        chunks = policy.sample_chunks(obs, self.samples, self.noise_scale, seed=seed)
        candidates = np.stack([c.actions for c in chunks])
        if self.mode == "random":
            index, values = int(self._rng.integers(self.samples)), None
        else:
            values = self.value.score(obs, candidates)
            index = int(np.argmax(values))
        return Steered(chunks[index], index, candidates, values, self.mode)
