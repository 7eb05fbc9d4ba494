"""The scripted expert solves every task in the demo setting and in every OOD family (small N here; the full
numbers come from `retain-sim expert-check`)."""

import pytest

from retain_ros.sim.collect import expert_check
from retain_ros.sim.env import EnvConfig, TabletopEnv
from retain_ros.sim.episode import run_expert_episode
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
