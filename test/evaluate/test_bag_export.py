"""Bags -> training episodes: a simulator bag gives the frames the node would see and DROID actions that agree with
what the expert commanded; bad inputs are one clear error. (The LeRobot dataset round trip: test/lerobot_backend.)"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from retain_ros.control.inputs import InputSettings
from retain_ros.evaluate.bag_export import export_bag
from retain_ros.evaluate.bag_reader import Bag, BagError
from retain_ros.evaluate.data_cli import main as retain_data
from retain_ros.topics import Topics


def test_a_simulator_bag_exports_the_node_frames_and_the_droid_actions_the_expert_commanded(sim_bag):
    [episode] = export_bag(sim_bag, InputSettings(), fps=15)
    frames = len(episode.actions)
    assert frames == 19 and episode.task == "pick up the red cube"  # 20 camera frames; the last has no successor
    assert episode.images["exterior"].shape == (frames, 32, 32, 3) and episode.images["wrist"].dtype == np.uint8
    assert episode.state.shape == episode.actions.shape == (frames, 8)
    # the definition: the arm moved 0.2 rad x a to the next frame, the gripper action is the next frame's gripper
    moved = episode.state[1:, :7] - episode.state[:-1, :7]
    np.testing.assert_allclose(moved, 0.2 * episode.actions[:-1, :7], atol=1e-5)
    np.testing.assert_array_equal(episode.actions[:-1, 7], episode.state[1:, 7])
    with Bag(sim_bag) as bag:
        commanded = np.array([m.msg.data for m in bag.messages([Topics().droid_action])])[:frames]
    assert np.corrcoef(commanded[:, :7].ravel(), episode.actions[:, :7].ravel())[0, 1] > 0.99
    assert np.abs(commanded[:, :7] - episode.actions[:, :7]).max() < 0.05  # the tracking lag of one step


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
