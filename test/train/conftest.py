"""A tiny real dataset recorded with the simulator (one short expert episode per task, 16 px images)."""

from __future__ import annotations

import pytest

from retain_ros.sim.collect import CollectConfig, collect


def _collect(root, tasks, name, noise_rad_s=0.0):
    cfg = CollectConfig(tasks=tasks, variation="id", episodes=1, out_dir=root / name, workers=1, image_size=16,
                        noise_rad_s=noise_rad_s)
    collect(cfg, progress=False)
    return root / name


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory):
    """(generalist-like data, target data): directories written by the real collector."""
    root = tmp_path_factory.mktemp("sim_data")
    return _collect(root, ("pick_red",), "pre"), _collect(root, ("pick_blue",), "target")


@pytest.fixture(scope="session")
def noisy_data(tmp_path_factory):
    """One expert episode recorded with DART noise injection (0.05 rad/s): noisy execution, clean labels."""
    return _collect(tmp_path_factory.mktemp("noisy_data"), ("pick_red",), "noisy", noise_rad_s=0.05)
