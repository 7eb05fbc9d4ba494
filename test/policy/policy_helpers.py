"""Helpers of the policy tests: tiny reference-VLA configs, statistics and observations."""

from __future__ import annotations

import numpy as np
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.interface import Observation
from retain_ros.policy.processor_reference import NormalizationStats


def tiny_config(**overrides) -> ReferenceVLAConfig:
    """A reference VLA of a few thousand parameters (16x16 images, width 16, one block per part)."""
    return ReferenceVLAConfig.tiny(**overrides)


def tiny_stats() -> NormalizationStats:
    """Non-trivial statistics, so normalisation is exercised."""
    return NormalizationStats(np.linspace(-1, 1, 8), np.full(8, 0.5), np.linspace(-0.2, 0.2, 8), np.full(8, 0.3))


def observation(seed: int = 0, size: tuple[int, int] = (24, 32), instruction: str = "pick up the red cube",
                cameras: tuple[str, ...] = ("exterior", "wrist")) -> Observation:
    """A random, well-formed observation (images deliberately not at the model's size)."""
    rng = np.random.default_rng(seed)
    images = {c: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for c in cameras}
    return Observation(images, rng.uniform(-1, 1, 7), 0.3, instruction, stamp_ns=1234)
