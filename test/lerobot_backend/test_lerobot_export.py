"""`retain-data export`: a simulator bag (test/data/sim_pick_red_20, written by test/data/make_sim_bag.py) becomes a
LeRobot dataset that LeRobot loads with the same frames, states and actions the export computed.

Runs in .venv-lerobot (`make test-lerobot`); skipped where LeRobot is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

import numpy as np  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

from retain_ros.control.inputs import InputSettings  # noqa: E402
from retain_ros.evaluate.bag_export import export_bag  # noqa: E402
from retain_ros.evaluate.data_cli import main as retain_data  # noqa: E402

BAG = Path(__file__).resolve().parent.parent / "data" / "sim_pick_red_20"


def test_a_simulator_bag_round_trips_through_a_lerobot_dataset(tmp_path, capsys):
    out = tmp_path / "push_demos"
    assert retain_data(["export", str(BAG), "--out", str(out), "--task", "pick up the red cube",
                        "--repo-id", "local/sim_demos"]) == 0
    assert "wrote 1 episode(s), 19 frames at 15 fps" in capsys.readouterr().out
    [expected] = export_bag(BAG, InputSettings(instruction="pick up the red cube"), fps=15)

    dataset = LeRobotDataset("local/sim_demos", root=out)
    assert dataset.fps == 15 and dataset.num_episodes == 1 and len(dataset) == 19
    assert set(dataset.meta.features) >= {"observation.images.exterior_1_left", "observation.images.wrist_left",
                                          "observation.state", "action"}
    for t in range(len(dataset)):
        frame = dataset[t]
        assert frame["task"] == "pick up the red cube"
        np.testing.assert_array_equal(frame["observation.state"].numpy(), expected.state[t])
        np.testing.assert_array_equal(frame["action"].numpy(), expected.actions[t])
        for camera, key in (("exterior", "observation.images.exterior_1_left"),
                            ("wrist", "observation.images.wrist_left")):
            pixels = np.round(frame[key].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)  # CHW float in [0, 1]
            np.testing.assert_array_equal(pixels, expected.images[camera][t])  # lossless PNG frames

    assert retain_data(["export", str(BAG), "--out", str(out)]) == 2  # never into an existing dataset
    assert "exists; choose a new --out" in capsys.readouterr().err
