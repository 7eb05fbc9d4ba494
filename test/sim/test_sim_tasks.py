"""Every task in every variation: observation spec, rewards in [0, 1], determinism, detectors reject doing nothing."""

import numpy as np
import pytest

from retain_ros.errors import ConfigError
from retain_ros.sim.env import EnvConfig, TabletopEnv, make_task
from retain_ros.sim.expert import ScriptedExpert
from retain_ros.sim.physics import CUBES
from retain_ros.sim.tasks import GENERALIST, SUITE, TARGET
from retain_ros.sim.variations import VARIATIONS, get_variation

TASKS = SUITE.names()
PAIRS = [(t, v) for t in TASKS for v in VARIATIONS]
IDLE = np.array([0.0] * 7 + [0.0])


def check_observation(env, obs):
    spec = env.observation_spec()
    assert set(obs) == set(spec)
    for name, (shape, dtype) in spec.items():
        assert obs[name].shape == shape, name
        assert obs[name].dtype == dtype, name
        if dtype != np.uint8:
            assert np.all(np.isfinite(obs[name])), name


def test_suite_has_a_generalist_set_and_unseen_target_tasks():
    generalist, target = SUITE.names(GENERALIST), SUITE.names(TARGET)
    assert len(generalist) >= 8 and len(target) >= 2
    assert not set(generalist) & set(target)
    generalist_instructions = {SUITE.get(n).instruction for n in generalist}
    assert all(SUITE.get(n).instruction not in generalist_instructions for n in target)
    assert len({SUITE.get(n).instruction for n in TASKS}) == len(TASKS)


@pytest.mark.parametrize("task, variation", PAIRS)
def test_invariants_for_every_task_and_variation(task, variation):
    env = TabletopEnv(task, variation, EnvConfig(render=False))
    obs = env.reset(seed=3)
    check_observation(env, obs)
    assert env.instruction
    expert = ScriptedExpert(env.task.expert_plan(env.physics))
    for _ in range(5):
        result = env.step(expert.act(env.physics))
        check_observation(env, result.observation)
        assert 0.0 <= result.reward <= 1.0
        assert isinstance(result.success, bool)


def test_rendered_observations_match_the_spec():
    with TabletopEnv("pick_red", "appearance", EnvConfig(image_size=64)) as env:
        obs = env.reset(seed=1)
        check_observation(env, obs)
        assert obs["exterior_image"].shape == (64, 64, 3)
        assert obs["exterior_image"].std() > 5 and obs["wrist_image"].std() > 5  # not blank


@pytest.mark.parametrize("task", TASKS)
def test_success_detector_rejects_a_do_nothing_policy(task):
    env = TabletopEnv(task, "id", EnvConfig(render=False))
    env.reset(seed=0)
    for _ in range(20):
        result = env.step(IDLE)
        assert not result.success
        assert result.reward < 1.0


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_same_seed_gives_the_same_episode(variation):
    def rollout(seed):
        env = TabletopEnv("place_red_and_blue_on_yellow", variation, EnvConfig(render=True, image_size=32))
        env.reset(seed)
        expert = ScriptedExpert(env.task.expert_plan(env.physics))
        frames = [env.step(expert.act(env.physics)).observation for _ in range(8)]
        env.close()
        return env.task.initial_layout.poses, frames, env.physics.model.cam_pos.copy()

    layout_a, frames_a, cam_a = rollout(7)
    layout_b, frames_b, cam_b = rollout(7)
    assert layout_a == layout_b
    np.testing.assert_array_equal(cam_a, cam_b)
    for fa, fb in zip(frames_a, frames_b):
        for key in fa:
            np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)
    layout_c, _, _ = rollout(8)
    assert layout_c != layout_a


def test_variations_change_what_they_name_and_reset_restores_the_model():
    env = TabletopEnv("pick_red", "id", EnvConfig(render=False))
    env.reset(0)
    model = env.physics.model
    rgba, cam = model.geom("table_top").rgba.copy(), model.cam_pos.copy()
    id_layout = env.task.initial_layout.poses
    for name, field in (("appearance", "rgba"), ("viewpoint", "cam")):
        other = TabletopEnv("pick_red", name, EnvConfig(render=False))
        other.reset(0)
        changed_rgba = not np.array_equal(other.physics.model.geom("table_top").rgba, rgba)
        changed_cam = not np.array_equal(other.physics.model.cam_pos, cam)
        assert (changed_rgba, changed_cam) == ((True, False) if field == "rgba" else (False, True))
        other.task = make_task("pick_red", "id")
        other.reset(0)
        np.testing.assert_array_equal(other.physics.model.geom("table_top").rgba, rgba)
        np.testing.assert_array_equal(other.physics.model.cam_pos, cam)
    distractors = TabletopEnv("pick_red", "distractors", EnvConfig(render=False))
    distractors.reset(0)
    assert {n: p for n, p in distractors.task.initial_layout.poses.items() if n in CUBES} == \
        {n: p for n, p in id_layout.items() if n in CUBES}
    assert distractors.physics.object_position("distractor_0")[2] > 0  # on the table, not parked


def test_unknown_names_list_the_choices_and_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'pick_red'.*valid tasks: pick_red"):
        make_task("pick_rde")
    with pytest.raises(ConfigError, match=r"did you mean 'viewpoint'.*valid variations: id, position"):
        make_task("pick_red", "viewpiont")
    with pytest.raises(ConfigError, match="valid tags"):
        SUITE.names("generalists_x")


@pytest.mark.parametrize("make", [
    lambda: get_variation("distractors", num_distractors=9),
    lambda: get_variation("viewpoint", camera_azimuth_rad=2.0),
    lambda: EnvConfig(image_size=1000),
    lambda: EnvConfig(image_size=4),
    lambda: EnvConfig(max_steps=0),
])
def test_impossible_settings_are_refused_with_a_reason(make):
    with pytest.raises(ConfigError, match="impossible|must|too large|range"):
        make()


def test_negative_seed_is_refused():
    with pytest.raises(ConfigError, match="seed"):
        TabletopEnv("pick_red", "id", EnvConfig(render=False)).reset(-1)
