"""Value-guided steering in the running node, changed live the way `ros2 param set` changes it.

The inputs are constant (FakeRobot), so the policy's own chunk (sample 0) is a function of the weights alone and the
test computes it here. The value checkpoint's Q is a known function of the chunk (its first action's joint-1 number),
so every steered chunk must report exactly that Q and score at least as high as the policy's own chunk, which is
always among the samples. Bad steering changes are refused at once or reported, and control goes on throughout.
"""

from __future__ import annotations

import shutil

import pytest
from fake_robot import FakeRobot
from ros_helpers import latest_status, wait_until
from test_live_merge_node import CHUNKS, NODE, Expected, serving
from test_policy_node import T, check_trajectory, start_policy

from retain_ros.control import messages
from retain_ros.policy.interface import load_policy
from retain_ros.steering.synthetic import first_joint_value as known_value


def steering_is(observer, mode: str, checkpoint: str = ""):
    def check():
        s = latest_status(observer)
        if s and s["steering"]["mode"] == mode and (not checkpoint or s["steering"]["checkpoint"] == checkpoint):
            return s
        return None
    return check


@pytest.mark.slow
def test_steering_changes_live_execute_the_best_sample_and_never_corrupt_control(ros, tiny_checkpoints, tmp_path):
    _, _, observer, _ = ros
    root, base, finetuned = tiny_checkpoints
    expected = Expected(base, finetuned)
    weights = expected.add(0.5)
    own = expected.by_id[weights]  # the policy's own chunk (sample 0) for the constant inputs
    spec = load_policy(base).spec
    value_dir = known_value(spec).save_pretrained(root / "value")
    other = known_value(spec).save_pretrained(root / "value2")
    wrong = known_value(type(spec)(("front", "side"), spec.image_size, horizon=spec.horizon)).save_pretrained(
        root / "value_other_cameras")
    outside = shutil.copytree(value_dir, tmp_path / "outside_value")
    proc = start_policy(ros, tiny_checkpoints, execute_steps=2)
    FakeRobot(observer.node)
    status = wait_until(serving(observer, weights), 60, "commanding unsteered", proc)
    assert status["steering"]["mode"] == "none"

    # refused at once, with the reason; nothing changes
    for params, words in (({"steering": "value"}, "needs steering_checkpoint"),
                          ({"steering": "best"}, "unknown"),
                          ({"steering_checkpoint": str(outside)}, "outside checkpoint_root"),
                          ({"steering_samples": 0}, "steering_samples")):
        result = observer.set_parameters(NODE, params)[0]
        assert not result.successful and words in result.reason, (params, result.reason)
    assert observer.set_parameters(NODE, {"steering_checkpoint": str(wrong)})[0].successful  # not used yet
    result = observer.set_parameters(NODE, {"steering": "value"})[0]
    assert not result.successful and "missing ['front', 'side']" in result.reason

    # on: the value function loads off the control thread and steers from a coming chunk
    results = observer.set_parameters(NODE, {"steering_checkpoint": str(value_dir), "steering_samples": 8,
                                             "steering": "value"})
    assert all(r.successful for r in results), [r.reason for r in results]
    status = wait_until(steering_is(observer, "value", str(value_dir)), 30, "steering with the value function", proc)
    assert status["state"] == "commanding" and status["steering"]["samples"] == 8
    first = len(observer.received(CHUNKS))
    wait_until(lambda: len(observer.received(CHUNKS)) >= first + 12, 30, "steered chunks", proc)

    # a checkpoint that passes the check but cannot load: the serving steering stays, the status says why
    broken = known_value(spec).save_pretrained(root / "value_broken")
    (broken / "model.safetensors").write_bytes(b"garbage")
    assert observer.set_parameters(NODE, {"steering_checkpoint": str(broken)})[0].successful
    status = wait_until(lambda: (s := latest_status(observer)) and "safetensors" in s["steering"]["last_error"] and s,
                        30, "the failed load reported", proc)
    assert status["steering"]["checkpoint"] == str(value_dir) and status["state"] == "commanding"
    # another good checkpoint, then off again
    assert observer.set_parameters(NODE, {"steering_checkpoint": str(other)})[0].successful
    wait_until(steering_is(observer, "value", str(other)), 30, "the second value function", proc)
    assert observer.set_parameters(NODE, {"steering": "none"})[0].successful
    wait_until(steering_is(observer, "none"), 30, "unsteered again", proc)
    last = len(observer.received(CHUNKS))
    wait_until(lambda: len(observer.received(CHUNKS)) >= last + 3, 30, "unsteered chunks", proc)

    chunks = observer.received(CHUNKS)
    steered = [c for c in chunks if c.steering == "value"]
    assert len(steered) >= 12 and chunks[-1].steering == "none"
    for chunk in chunks:
        expected.check(chunk) if chunk.steering == "none" else None  # unsteered: exactly the merge's own chunk
    for chunk in steered:
        actions, _ = messages.action_chunk_arrays(chunk)
        assert chunk.steering_samples == 8 and 0 <= chunk.steering_index < 8
        assert chunk.steering_value == pytest.approx(float(actions[0, 0]), abs=1e-5)  # Q of what was executed
        assert chunk.steering_value >= own[0, 0] - 1e-5  # at least as good as the policy's own sample
        assert chunk.steering_spread >= 0
    assert sum(c.steering_index != 0 for c in steered) >= len(steered) // 2  # the choice mattered
    commands = observer.received(T.arm_command)
    assert len(commands) >= len(chunks) - 1
    for command in commands:
        check_trajectory(command)
