"""`make demo` in its reduced form (`--quick`), as a new user runs it: a separate process, real nodes, a real bag.

Checks what the demo promises (its outputs exist and fit together), not success rates: the quick episodes are 3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bag_counts(path: Path) -> dict[str, int]:
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo_out"
    run = subprocess.run([sys.executable, "-m", "retain_ros.demo", "--quick", "--out", str(out)], cwd=str(REPO),
                         capture_output=True, text=True, timeout=400)
    log = f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, log
    for name in ("sim_robot", "retain_policy"):  # every node it started was stopped, and stopped cleanly
        assert f"stopped {name} (exit code 0)" in run.stdout, log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == {str(k): "ok" for k in range(1, 6)}, log
    # every setting ran at both live alphas, and the live alpha change served other weights
    settings = {("push_red_to_purple", "id"), ("push_red_to_purple", "viewpoint"), ("pick_red", "id")}
    for alpha in (0.5, 0.9):
        assert {(e["task"], e["variation"]) for e in summary["episodes"] if e["alpha"] == alpha} == settings, log
    weights_ids = summary["weights_ids"]
    assert set(weights_ids) == {"0.5", "0.9"} and weights_ids["0.5"] != weights_ids["0.9"], weights_ids
    assert all(len(f) == 64 for f in weights_ids.values()) and summary["reload_s"] > 0
    # the bag has both nodes' topics and one marker per episode
    counts = bag_counts(out / "bag")
    for topic in ("/cameras/exterior/image_raw", "/cameras/wrist/image_raw", "/franka/joint_states", "/instruction",
                  "/fr3_arm_controller/joint_trajectory", "/franka_gripper/width_command",
                  "/retain_policy/action_chunk", "/retain_policy/status", "/sim_robot/episode"):
        assert counts.get(topic, 0) > 0, (topic, counts)
    assert counts["/retain_demo/episode_start"] == 10
    # one node, each instruction at its recipe: the target at 0.9, the generalist task at the base, and the target
    # again, from the recipe cache (a reference swap)
    routed = [(e["task"], e["serving"]["route"], e["serving"]["recipe"]) for e in summary["routed"]]
    target_rule = "push the red cube onto the purple plate"
    assert routed == [("push_red_to_purple", target_rule, "0.9"), ("pick_red", ".*", "0"),
                      ("push_red_to_purple", target_rule, "0.9")], routed
    assert summary["routed"][2]["serving"]["cached"]
    # the generalist task once more, steered by the embedded value function: its chunks say so in the bag
    assert summary["steered"]["task"] == "pick_red" and summary["steered"]["samples"] == 10
    assert summary["steered"]["last_value"] is not None
    # the replay scored every alpha against held-out expert demos of the OOD setting, not the node's own commands
    heldout = json.loads((out / "heldout" / "index.json").read_text())["episodes"]
    assert [(e["task"], e["variation"], e["seed"]) for e in heldout] == [("push_red_to_purple", "viewpoint", 3000)]
    report = json.loads((out / "replay" / "report.json").read_text())
    assert report["alphas"] == [0.0, 0.5, 1.0] and report["target"] == "action"
    scored = report["aggregate"].values()
    assert len(scored) == 3 and all(a["observations"] > 0 and a["mse"] >= 0 for a in scored)
    assert set(summary["replay"]) == set(report["labels"])
    for png in ("replay/error_vs_alpha.png", "episode_strip.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    printed = (out / "summary.txt").read_text()
    assert "push_red_to_purple / viewpoint" in printed and "replay alpha" in printed and printed in run.stdout
    assert "per-instruction recipes" in printed and "cached: reference swap" in printed
    assert "value-guided steering (K = 10)" in printed


def test_demo_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    """Issue 13: `--out ~` must never delete a home folder; only the demo's own output is replaced."""
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    run = subprocess.run([sys.executable, "-m", "retain_ros.demo", "--quick", "--out", str(precious)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 2 and "did not make" in run.stderr and "nothing was deleted" in run.stderr
    assert (precious / "thesis.tex").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    from retain_ros.errors import ConfigError
    from retain_ros.demo.main import OUT_MARKER, prepare_out

    with pytest.raises(ConfigError, match="is a file"):
        prepare_out(tmp_path / "file")
    earlier = tmp_path / "earlier"
    prepare_out(earlier)
    (earlier / "old_report.json").write_text("{}")
    prepare_out(earlier)  # an earlier demo's folder is replaced
    assert sorted(p.name for p in earlier.iterdir()) == [OUT_MARKER]


def test_clean_up_stops_every_process_even_when_an_earlier_step_raises(tmp_path):
    """Issue 13: a recorder that fails to close must not leave the node processes running."""
    import os

    from retain_ros.demo.plan import Plan
    from retain_ros.demo.session import LiveSession
    from retain_ros.ros.processes import NodeProcess

    class BrokenRecorder:  # the one part that fails here; the processes and the clean-up are real
        subscriptions: dict = {}

        def close(self):
            raise OSError("disk full while finishing the bag")

    session = LiveSession(tmp_path, Plan.make(True, 1, None, "viewpoint"))
    session.recorder = BrokenRecorder()
    session.nodes = {f"sleeper{i}": NodeProcess("http.server", ["0", "--bind", "127.0.0.1"], dict(os.environ),
                                                tmp_path / f"sleeper{i}.log") for i in range(2)}
    procs = [n.proc for n in session.nodes.values()]
    with pytest.raises(OSError, match="disk full"):
        session.close()
    assert all(p.poll() is not None for p in procs) and session.nodes == {}
