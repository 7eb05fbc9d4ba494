"""`retain-eval trace`: phase events from a per-step trace, and the command end to end on a tiny real checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retain_ros.evaluate.cli import main as retain_eval
from retain_ros.evaluate.sim_trace import EpisodeTrace
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.processor_reference import NormalizationStats
from retain_ros.policy.reference_policy import random_policy


def place_trace(release: bool, over_goal: bool) -> EpisodeTrace:
    """A place episode: approach (steps 0-9), grasp (10), lift (11-19), carry, and maybe let go at step 30."""
    t = EpisodeTrace("place_red_on_yellow", "id", 7, "cube_red", "plate_yellow", lifts=True)
    goal = np.array([0.2, 0.0]) if over_goal else np.array([0.5, 0.0])
    for step in range(40):
        lifted = 11 <= step < 30 or (not release and step >= 11)
        cube = np.array([min(step, 20) * 0.01, 0.0, 0.10 if lifted else 0.02])
        tcp = cube + np.array([0.0, 0.0, 0.3 - 0.03 * step if step < 10 else 0.0])
        held = 10 <= step and not (release and step >= 30)
        t.tcp.append(tcp)
        t.obj.append(cube)
        t.goal.append(goal)
        t.width.append(0.045 if held else 0.08)
        t.touching.append(held)
        t.queries.append((step, [1.0 if step >= 8 else 0.0]))
    t.record = {"success": False}
    return t


def test_the_phase_an_episode_ended_in_is_the_first_event_that_never_came():
    held = place_trace(release=False, over_goal=True).summary()
    assert (held["reach"], held["asked_close"], held["touch"], held["lift"]) == (10, 8, 10, 11)
    assert held["release"] is None and held["ended_in"] == "release" and held["goal_nearest_cm"] == 0.0
    dropped = place_trace(release=True, over_goal=False).summary()
    assert dropped["release"] == 30 and dropped["ended_in"] == "released off goal"
    assert dropped["goal_nearest_cm"] == pytest.approx(30.0)
    never = EpisodeTrace("pick_red", "id", 1, "cube_red", None, lifts=True)
    for _ in range(5):
        never.tcp.append(np.array([0.0, 0.0, 0.5]))
        never.obj.append(np.zeros(3))
        never.width.append(0.08)
        never.touching.append(False)
    assert never.summary()["ended_in"] == "reach" and never.summary()["touch"] is None


def test_trace_runs_episodes_and_writes_summaries_and_arrays(tmp_path, capsys):
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.5))
    ckpt = random_policy(ReferenceVLAConfig.tiny(), seed=0, stats=stats).save_pretrained(tmp_path / "tiny")
    out = tmp_path / "trace"
    assert retain_eval(["trace", "--checkpoint", str(ckpt), "--task", "pick_red", "--episodes", "2", "--seed", "5",
                        "--image-size", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed 5:" in printed and "seed 6:" in printed and "pick_red / id:" in printed
    report = json.loads((out / "trace.json").read_text())
    assert [e["seed"] for e in report["episodes"]] == [5, 6] and sum(report["ended_in"].values()) == 2
    arrays = np.load(out / "traces.npz")
    for episode in report["episodes"]:
        assert arrays[f"tcp_{episode['seed']}"].shape == (episode["steps"], 3)
        assert len(report["queries"][str(episode["seed"])]) >= episode["steps"] // 8


def test_trace_refuses_an_unknown_task_and_no_episodes(tmp_path, capsys):
    assert retain_eval(["trace", "--task", "juggle", "--out", str(tmp_path)]) == 2
    assert "juggle" in capsys.readouterr().err
    assert retain_eval(["trace", "--task", "pick_red", "--episodes", "0"]) == 2
    assert "--episodes 0 must be >= 1" in capsys.readouterr().err
