"""The scripted expert solves every task in the demo setting and in every OOD family (small N here; the full
numbers come from `retain-sim expert-check`)."""

import numpy as np
import pytest

from retain_ros.droid_action import rad_s_to_droid
from retain_ros.sim.collect import expert_check
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.episode import CorrelatedNoise, run_expert_episode
from retain_ros.sim.tasks import SUITE
from retain_ros.sim.variations import VARIATIONS

# `appearance` and `viewpoint` draw the same layouts as `id` for a seed (they only change colours, light and camera,
# which the expert does not see), so one seed each proves them; the layout families get two.
SEEDS = {"id": 2, "position": 2, "distractors": 2, "appearance": 1, "viewpoint": 1}


@pytest.mark.slow
def test_expert_solves_every_task_in_every_variation():
    assert set(SEEDS) == set(VARIATIONS)
    records = []
    for episodes in sorted(set(SEEDS.values())):
        variations = [v for v, n in SEEDS.items() if n == episodes]
        result = expert_check(["all"], variations, episodes=episodes, seed=100, workers=2, progress=False)
        assert set(result.rates) == set(SUITE.names())
        unsolved = [(t, v) for t, row in result.rates.items() for v, rate in row.items() if rate == 0.0]
        assert not unsolved
        records += result.records
    assert sum(r["success"] for r in records) / len(records) >= 0.95


def test_expert_emits_droid_actions_within_limits():
    env = TabletopEnv("push_red_to_purple", "position", EnvConfig(render=False))
    episode = run_expert_episode(env, seed=5)
    assert episode.success
    assert episode.actions.shape == (episode.num_steps, 8)
    assert ((episode.actions[:, 7] >= 0) & (episode.actions[:, 7] <= 1)).all()
    assert episode.rewards.max() == 1.0 and (episode.rewards >= 0).all()


def test_expert_actions_stay_inside_the_droid_action_space():
    """Issue 15: labels outside [-1, 1] are ones the policy can never output (the old 1 rad/s clip cut 28% of them)."""
    for task in SUITE.names():
        episode = run_expert_episode(TabletopEnv(task, "id", EnvConfig(render=False)), seed=3)
        assert episode.success, task
        arm = episode.actions[:, :7]
        assert np.abs(arm).max() <= 1.0, (task, np.abs(arm).max())
        assert np.abs(arm).max() > 0.1, task  # the labels are not vanishingly small either
        np.testing.assert_array_equal(episode.executed_actions, episode.actions)  # no noise: executed = labels


def test_noise_injection_executes_noisy_actions_and_records_clean_labels():
    env = TabletopEnv("pick_red", "id", EnvConfig(render=False))
    clean = run_expert_episode(env, seed=4)
    noisy = run_expert_episode(env, seed=4, noise_rad_s=0.05)
    assert noisy.noise_rad_s == 0.05 and noisy.success
    noise = CorrelatedNoise(0.05, 7, seed=4)
    expected = np.stack([rad_s_to_droid(noise.sample(), 1 / 15) for _ in range(noisy.num_steps)])
    # what was executed is the label plus exactly the injected noise ...
    np.testing.assert_allclose(noisy.executed_actions[:, :7] - noisy.actions[:, :7], expected, atol=1e-12)
    np.testing.assert_array_equal(noisy.executed_actions[:, 7], noisy.actions[:, 7])
    # ... and the label is the expert's clean action for the state it saw: identical to the clean run at the start
    np.testing.assert_array_equal(noisy.actions[0], clean.actions[0])
    positions = "joint_positions"
    assert not np.array_equal(noisy.observations[positions][10], clean.observations[positions][10])
    assert 0.03 < np.std(expected * 3.0) < 0.07  # 0.05 rad/s in DROID units (a = v / 3)
