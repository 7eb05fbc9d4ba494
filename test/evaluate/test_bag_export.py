"""Bags -> training episodes: a simulator bag gives the frames the node would see and DROID actions that agree with
what the expert commanded; bad inputs are one clear error. (The LeRobot dataset round trip: test/lerobot_backend.)"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from retain_ros.control.inputs import InputSettings
from retain_ros.evaluate.bag_export import gap_free_runs, export_bag, gripper_commands
from retain_ros.evaluate.bag_reader import Bag, BagError
from retain_ros.evaluate.data_cli import main as retain_data
from retain_ros.topics import Topics


@pytest.fixture(scope="module")
def grasp_bag(tmp_path_factory):
    """A pick_red expert episode that grasps the cube and lifts it (51 steps), recorded by the simulator."""
    from retain_ros.sim.bag import write_episode_bag
    from retain_ros.sim.env import EnvConfig, TabletopEnv
    from retain_ros.sim.episode import run_expert_episode

    with TabletopEnv("pick_red", "id", EnvConfig(image_size=32, max_steps=120)) as env:
        episode = run_expert_episode(env, seed=3)
    return write_episode_bag(episode, tmp_path_factory.mktemp("grasp_bag") / "episode", storage="mcap")


def test_a_simulator_bag_exports_the_node_frames_and_the_droid_actions_the_expert_commanded(grasp_bag):
    [episode] = export_bag(grasp_bag, InputSettings(), fps=15)
    frames = len(episode.actions)
    assert frames == 50 and episode.task == "pick up the red cube"  # 51 camera frames; the last has no successor
    assert episode.images["exterior"].shape == (frames, 32, 32, 3) and episode.images["wrist"].dtype == np.uint8
    assert episode.state.shape == episode.actions.shape == (frames, 8)
    moved = episode.state[1:, :7] - episode.state[:-1, :7]  # the definition: the arm moved 0.2 rad x a
    np.testing.assert_allclose(moved, 0.2 * episode.actions[:-1, :7], atol=1e-5)
    with Bag(grasp_bag) as bag:
        commanded = np.array([m.msg.data for m in bag.messages([Topics().droid_action])])[:frames]
    assert np.corrcoef(commanded[:, :7].ravel(), episode.actions[:, :7].ravel())[0, 1] > 0.99
    assert np.abs(commanded[:, :7] - episode.actions[:, :7]).max() < 0.05  # the tracking lag of one step
    # the gripper: closed on the cube the fingers rest at 0.44 of closed, and the command stays 1, as the expert's
    assert 0.3 < episode.state[-1, 7] < 0.5
    np.testing.assert_array_equal(episode.actions[:, 7], commanded[:, 7])


def test_gripper_commands_and_gaps():
    positions = np.array([0.0, 0.0, 0.2, 0.44, 0.44, 0.44, 0.3, 0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(gripper_commands(positions), [0, 1, 1, 1, 1, 0, 0, 0, 1, 1])
    stamps = np.array([0, 66, 133, 400, 466, 533]) * 10**6  # a 267 ms gap after the third frame
    assert gap_free_runs(stamps, 66.7e6) == [slice(0, 3), slice(3, 6)]


def test_export_errors_name_the_problem_and_the_fix(sim_bag, tmp_path, capsys):
    with pytest.raises(BagError, match="runs at 15.0 Hz, which gives no 40 fps"):
        export_bag(sim_bag, InputSettings(), fps=40)
    with pytest.raises(BagError, match="lacks joint"):
        export_bag(sim_bag, InputSettings(joint_names=("panda_joint1",)), fps=15)
    assert retain_data(["export", str(sim_bag), "--out", str(tmp_path / "ds"), "--fps", "0"]) == 2
    assert "--fps 0 must be > 0" in capsys.readouterr().err
    if importlib.util.find_spec("lerobot") is None:  # this environment: the export says where it runs
        assert retain_data(["export", str(sim_bag), "--out", str(tmp_path / "ds")]) == 2
        assert "run the export in .venv-lerobot" in capsys.readouterr().err
