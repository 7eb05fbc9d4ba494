"""`retain-sim` end to end in subprocesses: list, expert-check, collect (dataset + bags), render, bad inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import Reader

from retain_ros.sim.dataset import load_episode, read_index
from retain_ros.topics import MSG_TYPES, Topics


def retain_sim(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "retain_ros.sim.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_list_shows_tasks_tags_and_variations():
    out = retain_sim("list", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert {v["name"] for v in listing["variations"]} == {"id", "position", "distractors", "appearance", "viewpoint"}
    assert sum("target" in t["tags"] for t in listing["tasks"]) >= 2
    text = retain_sim("list").stdout
    assert "generalist tasks:" in text and "pick up the red cube" in text


def test_expert_check_reports_rates_as_json():
    out = retain_sim("expert-check", "--tasks", "pick_blue", "--variations", "id", "position", "--episodes", 2,
                     "--workers", 1, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["rates"]["pick_blue"]) == {"id", "position"}
    assert len(result["records"]) == 4
    assert all(r["success"] for r in result["records"])


def test_collect_writes_dataset_and_bags_in_parallel(tmp_path):
    out_dir = tmp_path / "demos"
    out = retain_sim("collect", "--tasks", "pick_red,pick_green", "--variation", "viewpoint", "--episodes", 2,
                     "--out", out_dir, "--bag", "--workers", 2, "--image-size", 64)
    assert out.returncode == 0, out.stderr
    assert "collected 4 episode(s)" in out.stdout
    index = read_index(out_dir)
    assert [(e["task"], e["seed"]) for e in index["episodes"]] == \
        [("pick_green", 0), ("pick_green", 1), ("pick_red", 0), ("pick_red", 1)]
    entry = index["episodes"][0]
    episode = load_episode(out_dir / entry["file"])
    assert episode.success and entry["success"]
    assert episode.observations["wrist_image"].shape == (entry["num_steps"], 64, 64, 3)
    with Reader(out_dir / entry["bag"]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == \
            {getattr(Topics(), k): MSG_TYPES[k] for k in MSG_TYPES}
        steps = entry["num_steps"]
        assert reader.message_count == 7 * steps + -(-steps // 15)  # 7 streams per step + instruction at 1 Hz
    again = retain_sim("collect", "--tasks", "pick_red", "--episodes", 1, "--out", out_dir)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_collect_is_deterministic_across_worker_counts(tmp_path):
    for workers, name in ((1, "a"), (2, "b")):
        out = retain_sim("collect", "--tasks", "push_green_left", "--variation", "distractors", "--episodes", 1,
                         "--out", tmp_path / name, "--workers", workers, "--image-size", 32)
        assert out.returncode == 0, out.stderr
    a = load_episode(tmp_path / "a" / "push_green_left-distractors-000000.npz")
    b = load_episode(tmp_path / "b" / "push_green_left-distractors-000000.npz")
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.observations["exterior_image"], b.observations["exterior_image"])


def test_render_writes_a_png_strip(tmp_path):
    png = tmp_path / "strip.png"
    out = retain_sim("render", "--task", "pick_green", "--variation", "id", "appearance", "--frames", 3,
                     "--camera", "exterior", "--image-size", 48, "--out", png)
    assert out.returncode == 0, out.stderr
    image = Image.open(png)
    assert image.height >= 2 * 48 and image.width >= 3 * 48


@pytest.mark.parametrize("args, message", [
    (("collect", "--tasks", "pick_rde", "--episodes", 1, "--out", "{tmp}/o"), "did you mean 'pick_red'"),
    (("collect", "--tasks", "pick_red", "--variation", "lighting", "--episodes", 1, "--out", "{tmp}/o"),
     "valid variations: id, position, distractors, appearance, viewpoint"),
    (("collect", "--tasks", "pick_red", "--episodes", 0, "--out", "{tmp}/o"), "at least 1 episode"),
    (("collect", "--tasks", "pick_red", "--episodes", -3, "--out", "{tmp}/o"), "at least 1 episode"),
    (("collect", "--tasks", "pick_red", "--episodes", 1, "--out", "{tmp}/file/o"), "choose a writable --out"),
    (("collect", "--tasks", "pick_red", "--episodes", 1, "--image-size", 2000, "--out", "{tmp}/o"), "impossible"),
    (("expert-check", "--tasks", "stack_red_on_bleu", "--episodes", 1), "stack_red_on_blue"),
    (("expert-check", "--episodes", 0), "at least 1 episode"),
    (("expert-check", "--workers", 0, "--episodes", 1), "at least 1 worker"),
    (("render", "--task", "push_red_to_purple", "--variation", "idd", "--out", "{tmp}/x.png"), "did you mean 'id'"),
    (("render", "--task", "pick_red", "--frames", 0, "--out", "{tmp}/x.png"), "at least 1 frame"),
])
def test_bad_inputs_exit_2_with_a_message_naming_the_fix(tmp_path, args, message):
    (tmp_path / "file").write_text("a file where a directory is expected")
    out = retain_sim(*[str(a).format(tmp=tmp_path) for a in args])
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
