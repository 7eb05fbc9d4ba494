"""`retain-eval bag` end to end on real bags.

Standard-type bags in both storages, simulator bags, parity with the node's observation assembly, and every bad input
with its one clear message.
"""

import json
import shutil

import numpy as np
import pytest
import yaml
from test_bag_helpers import ARM, FINGERS, RATE_HZ, START_NS, TS, write_std_bag
from ros_helpers import next_domain_id
from rosbags.rosbag2 import Reader, Writer

from retain_ros.evaluate.bag_eval import read_episode
from retain_ros.evaluate.bag_reader import Bag
from retain_ros.evaluate.cli import main
from retain_ros.control.inputs import InputSettings, NodeInputs
from retain_ros.paths import config_dir
from retain_ros.evaluate.targets import ACTION, TargetBuilder
from retain_ros.policy.interface import load_policy


def run_bag(capsys, bags, checkpoints, out, *extra):
    base, finetuned = checkpoints
    rc = main(["bag", *map(str, bags), "--base", str(base), "--finetuned", str(finetuned), "--out", str(out),
               "--resamples", "100", "-q", *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_standard_bag_report_metrics_and_alpha_endpoints(storage, eval_checkpoints, tmp_path, capsys):
    bag = write_std_bag(tmp_path / "bag", storage)
    rc, out, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "out", "--alpha", "0,1")
    assert rc == 0, err
    assert "lowest MSE at alpha" in out and "report.json" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["target"] == "action" and report["labels"] == ["0.00", "1.00"]
    assert report["episodes"] == [{"name": "bag", "bag": str(bag), "observations": 8, "skipped_stale": 0}]
    for name in ("report.md", "error_vs_alpha.png", "traces_bag.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "| 0.00 |" in (tmp_path / "out" / "report.md").read_text()
    arrays = np.load(tmp_path / "out" / "predictions.npz")
    for label in ("0.00", "1.00"):
        pred, target = arrays[f"{label}|bag|predictions"], arrays[f"{label}|bag|targets"]
        arm = (pred - target)[..., :-1]
        ok = np.isfinite(arm)
        agg = report["aggregate"][label]
        assert agg["mse"] == pytest.approx(np.mean(arm[ok] ** 2))
        assert agg["mae"] == pytest.approx(np.mean(np.abs(arm[ok])))
        g = np.isfinite(target[..., -1])
        assert agg["gripper_accuracy"] == pytest.approx(np.mean((pred[..., -1] > 0.5)[g] == (target[..., -1] > 0.5)[g]))
        assert agg["mse_ci"][0] <= agg["mse"] <= agg["mse_ci"][1]
    # alpha 0 is the base model, alpha 1 the finetuned one: the merged weights really served
    with Bag(bag) as b:
        settings = InputSettings.from_file()
        data = read_episode(b, b.episodes()[0], NodeInputs(settings, ("exterior", "wrist")),
                            TargetBuilder(ACTION, ARM, FINGERS, 0.08, 1 / 15), "/action", 1)
    for label, ckpt in (("0.00", eval_checkpoints[0]), ("1.00", eval_checkpoints[1])):
        chunk = load_policy(ckpt).predict(data.observations[3])
        np.testing.assert_allclose(arrays[f"{label}|bag|predictions"][3], chunk.actions, atol=1e-5)
    assert not np.allclose(arrays["0.00|bag|predictions"], arrays["1.00|bag|predictions"])


def test_the_routed_entry_scores_each_episode_at_its_instructions_recipe(eval_checkpoints, tmp_path, capsys):
    bag = write_std_bag(tmp_path / "bag", "mcap")  # its instruction: "pick up the cube"
    for rule, same_as in (("pick up .*=1", "1.00"), ("stack .*=1", "0.00")):  # no match: the base
        out = tmp_path / same_as
        rc, _, err = run_bag(capsys, [bag], eval_checkpoints, out, "--alpha", "0,1", "--instruction-alphas", rule)
        assert rc == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["labels"] == ["0.00", "1.00", "routed"] and report["instruction_alphas"] == [rule]
        assert report["units"] == "DROID-normalised"  # the MSE of DROID actions is in their normalised units
        arrays = np.load(out / "predictions.npz")
        np.testing.assert_array_equal(arrays["routed|bag|predictions"], arrays[f"{same_as}|bag|predictions"])
        assert report["aggregate"]["routed"]["mse"] == report["aggregate"][same_as]["mse"]
    rc, _, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "bad", "--instruction-alphas", "pick=0.5,0.5")
    assert rc == 2 and "2 alphas for 1 finetuned" in err


def test_a_value_function_ranks_each_alpha_by_its_mean_q_beside_the_replay_error(eval_checkpoints, tmp_path, capsys):
    from retain_ros.policy.interface import PolicySpec
    from retain_ros.steering.synthetic import first_joint_value

    bag = write_std_bag(tmp_path / "bag", "mcap")
    spec = load_policy(eval_checkpoints[0]).spec
    value = first_joint_value(spec).save_pretrained(tmp_path / "value")  # Q = the first action's joint-1 number
    rc, out, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "out", "--alpha", "0,1", "--value",
                           str(value))
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    arrays = np.load(tmp_path / "out" / "predictions.npz")
    for label in ("0.00", "1.00"):
        entry = report["value"][label]
        assert entry["observations"] == 8
        assert entry["mean_q"] == pytest.approx(float(arrays[f"{label}|bag|predictions"][:, 0, 0].mean()), abs=1e-5)
    assert "mean Q: 0.00" in out and "highest at alpha" in out
    assert "## Value function" in (tmp_path / "out" / "report.md").read_text()
    other = first_joint_value(PolicySpec(("front",), (16, 16))).save_pretrained(tmp_path / "other")
    rc, _, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "bad", "--value", str(other))
    assert rc == 2 and "missing ['front']" in err


def test_single_storage_file_and_several_bags(eval_checkpoints, tmp_path, capsys):
    first = write_std_bag(tmp_path / "a", "sqlite3", seed=1)
    second = write_std_bag(tmp_path / "b", "mcap", seed=2)
    rc, _, err = run_bag(capsys, [next(first.glob("*.db3")), second], eval_checkpoints, tmp_path / "out",
                         "--alpha", "0.5")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [e["name"] for e in report["episodes"]] == ["a", "b"]
    assert report["aggregate"]["0.50"]["bootstrap_unit"] == "episode"


def test_simulator_bag_against_commands_and_joint_states_split_by_markers(sim_bag, eval_checkpoints, tmp_path,
                                                                          capsys):
    rc, _, err = run_bag(capsys, [sim_bag], eval_checkpoints, tmp_path / "cmd", "--alpha", "0.5", "--target",
                         "command", "--episode-topic", "/instruction")
    assert rc == 0, err
    report = json.loads((tmp_path / "cmd" / "report.json").read_text())
    assert report["units"] == "rad" and [e["name"] for e in report["episodes"]] == ["episode#0", "episode#1"]
    assert sum(e["observations"] for e in report["episodes"]) == 20
    agg = report["aggregate"]["0.50"]
    assert agg["mse"] > 0 and agg["gripper_accuracy"] is not None
    assert len(agg["per_step_mse"]) == 4 and len(agg["per_joint_mse"]) == 7
    rc, _, err = run_bag(capsys, [sim_bag], eval_checkpoints, tmp_path / "js", "--alpha", "0.5", "--target",
                         "joint_states")
    assert rc == 0, err
    assert json.loads((tmp_path / "js" / "report.json").read_text())["aggregate"]["0.50"]["mse"] > 0


def test_parity_the_bag_path_and_the_node_callbacks_build_the_same_observations(eval_checkpoints, tmp_path):
    """Issue 13: a real PolicyNode (rclpy, in this process) gets the bag's messages as rclpy messages through its own
    subscription callbacks; `retain-eval bag` reads the same bag with rosbags. Both must give the same observations.

    The node's clock is set to each message's log time (ROS time override), so its receive times equal the bag's.
    """
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.serialization import deserialize_message
    from rclpy.time import Time

    from retain_ros.control.params import SIM_OVERRIDES
    from retain_ros.evaluate.live_replay import message_class
    from retain_ros.ros.policy_node import PolicyNode

    bag = write_std_bag(tmp_path / "bag", "sqlite3", steps=5)
    settings = InputSettings.from_file()
    with Bag(bag) as b:
        from_bag = read_episode(b, b.episodes()[0], NodeInputs(settings, ("exterior", "wrist")),
                                TargetBuilder(ACTION, ARM, FINGERS, 0.08, 1 / 15), "/action", 1).observations
        first_joint_msg = next(b.messages(["/franka/joint_states"])).msg
        first_image_msg = next(b.messages(["/cameras/exterior/image_raw"])).msg
    base, finetuned = eval_checkpoints
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain_id())
    overrides = {**SIM_OVERRIDES, "autostart": False, "use_sim_time": True, "base_checkpoint": str(base),
                 "finetuned_checkpoints": [str(finetuned)]}
    node = PolicyNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        node.trigger_configure()
        clock = node.get_clock()
        callbacks = {"/cameras/exterior/image_raw": lambda m: node._on_image("exterior", m),
                     "/cameras/wrist/image_raw": lambda m: node._on_image("wrist", m),
                     "/franka/joint_states": node._on_joints, "/franka_gripper/joint_states": node._on_gripper,
                     "/instruction": node._on_instruction}
        from_node, last_ns = [], None
        with Reader(bag) as reader:
            for conn, log_ns, raw in reader.messages():
                if last_ns is not None and log_ns > last_ns:
                    from_node.append(node.inputs.observation(last_ns))
                if conn.topic in callbacks:
                    msg = deserialize_message(bytes(raw), message_class(conn.msgtype))
                    clock.set_ros_time_override(Time(nanoseconds=log_ns, clock_type=clock.clock_type))
                    callbacks[conn.topic](msg)  # the node's own subscription callback, as the executor calls it
                last_ns = log_ns
        from_node.append(node.inputs.observation(last_ns))
    finally:
        node.destroy_node()
        context.try_shutdown()
    assert len(from_bag) == len(from_node) == 5
    for a, b in zip(from_bag, from_node):
        assert a.images.keys() == b.images.keys()
        for cam in a.images:
            np.testing.assert_array_equal(a.images[cam], b.images[cam])
        np.testing.assert_array_equal(a.joint_positions, b.joint_positions)
        assert (a.gripper_position, a.instruction, a.stamp_ns) == (b.gripper_position, b.instruction, b.stamp_ns)
    # and both are right: bgr8 -> rgb, joints in joint_names order despite the driver's order, fingers -> gripper
    by_name = dict(zip(first_joint_msg.name, first_joint_msg.position))
    np.testing.assert_array_equal(from_bag[0].joint_positions, [by_name[n] for n in ARM])
    bgr = np.asarray(first_image_msg.data).reshape(first_image_msg.height, first_image_msg.width, 3)
    np.testing.assert_array_equal(from_bag[0].images["exterior"], bgr[:, :, ::-1])
    assert from_bag[0].instruction == "pick up the cube" and from_bag[0].gripper_position == pytest.approx(0.0)


def corrupt_bag(tmp_path):
    bag = write_std_bag(tmp_path / "corrupt", "sqlite3", steps=2)
    db = next(bag.glob("*.db3"))
    db.write_bytes(b"this is not an sqlite database" * 100)
    return bag


@pytest.mark.parametrize("case,expected", [
    ("missing", ["does not exist", "metadata.yaml"]),
    ("corrupt", ["cannot be read", "corrupt"]),
    ("missing_topic", ["/cameras/wrist/image_raw (camera 'wrist')", "The bag has:", "/franka/joint_states (",
                       "--params"]),
    ("unknown_joints", ["lacks joint(s) ['fr3_joint1'", "panda_joint1", "joint_names"]),
    ("no_actions", ["no executed actions", "/action", "--target joint_states"]),
    ("no_instruction", ["instruction topic '/instruction'", "--instruction"]),
    ("bad_alpha", ["alpha"]),
])
def test_bad_inputs_give_one_clear_message(case, expected, eval_checkpoints, tmp_path, capsys):
    alpha = "0.5"
    if case == "missing":
        bag = tmp_path / "nothing_here"
    elif case == "corrupt":
        bag = corrupt_bag(tmp_path)
    elif case == "missing_topic":
        bag = write_std_bag(tmp_path / "bag", steps=2, drop=("/cameras/wrist/image_raw",))
    elif case == "unknown_joints":
        bag = write_std_bag(tmp_path / "bag", steps=2, joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)))
    elif case == "no_actions":
        bag = write_std_bag(tmp_path / "bag", steps=2, drop=("/action", "/fr3_arm_controller/joint_trajectory"))
    elif case == "no_instruction":
        bag = write_std_bag(tmp_path / "bag", steps=2, drop=("/instruction",))
    else:
        bag, alpha = write_std_bag(tmp_path / "bag", steps=2), "1.5"
    rc, out, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "out", "--alpha", alpha)
    assert rc == 2, out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("retain-eval: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", ["no_instruction", "no_actions"])
def test_the_fix_each_message_names_works(case, eval_checkpoints, tmp_path, capsys):
    if case == "no_instruction":
        bag = write_std_bag(tmp_path / "bag", steps=3, drop=("/instruction",))
        extra = ["--instruction", "pick up the cube"]
    else:
        bag = write_std_bag(tmp_path / "bag", steps=3, drop=("/action", "/fr3_arm_controller/joint_trajectory"))
        extra = ["--target", "joint_states"]
    rc, _, err = run_bag(capsys, [bag], eval_checkpoints, tmp_path / "out", "--alpha", "0.5", *extra)
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["episodes"][0]["observations"] == 3


def test_params_file_topics_are_used(eval_checkpoints, tmp_path, capsys):
    """Topics come from the node's parameter file: a renamed topic is found only through --params."""
    bag = write_std_bag(tmp_path / "bag", steps=3)
    renamed = tmp_path / "renamed"
    with Reader(bag) as reader, Writer(renamed, version=9) as w:
        conns = {}
        for conn, log_ns, raw in reader.messages():
            topic = "/robot/joints" if conn.topic == "/franka/joint_states" else conn.topic
            if topic not in conns:
                conns[topic] = w.add_connection(topic, conn.msgtype, typestore=TS)
            w.write(conns[topic], log_ns, raw)
    rc, _, err = run_bag(capsys, [renamed], eval_checkpoints, tmp_path / "o1", "--alpha", "0.5")
    assert rc == 2 and "/franka/joint_states (joint states)" in err and "/robot/joints" in err
    params = yaml.safe_load(open(config_dir() / "fr3_droid.yaml"))
    params["retain_policy"]["ros__parameters"]["joint_states_topic"] = "/robot/joints"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rc, _, err = run_bag(capsys, [renamed], eval_checkpoints, tmp_path / "o2", "--alpha", "0.5", "--params",
                         str(tmp_path / "params.yaml"))
    assert rc == 0, err
    shutil.rmtree(tmp_path / "o2")


def test_frames_before_the_first_instruction_are_skipped_like_the_node_does(eval_checkpoints, tmp_path, capsys):
    """Regression: a camera frame logged before an episode's first instruction used to abort the whole evaluation.

    The node does not command without an instruction; the replay skips such frames and scores the rest.
    """
    full = write_std_bag(tmp_path / "full", steps=6)
    late = tmp_path / "late"
    with Reader(full) as reader, Writer(late, version=9) as w:
        conns = {}
        for conn, log_ns, raw in reader.messages():
            if conn.topic == "/instruction":
                log_ns = max(log_ns, START_NS + int(2.5e9 / RATE_HZ))  # it arrives only after the third frame
            if conn.topic not in conns:
                conns[conn.topic] = w.add_connection(conn.topic, conn.msgtype, typestore=TS)
            w.write(conns[conn.topic], log_ns, raw)
    rc, _, err = run_bag(capsys, [late], eval_checkpoints, tmp_path / "out", "--alpha", "0.5")
    assert rc == 0, err
    episode = json.loads((tmp_path / "out" / "report.json").read_text())["episodes"][0]
    assert 0 < episode["observations"] < 6
