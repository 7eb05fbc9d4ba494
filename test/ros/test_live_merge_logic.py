"""ModelManager, StreamSet and ControlLoop as plain logic: swaps between chunks, coalescing, failures keep serving."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from fake_robot import FINGERS, HOME_Q, INSTRUCTION, frames
from ros_helpers import make_checkpoints

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
from retain_ros.control.inputs import GRIPPER, INSTRUCTION as INSTR, JOINTS, InputSettings, NodeInputs
from retain_ros.control.streams import StreamSet
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_position
from retain_ros.paths import resolve_checkpoint
from retain_ros.ros.control_loop import ControlLoop
from retain_ros.ros.live_merge import MergeRequest, ModelManager
from retain_ros.ros.processes import wait_until


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    base, ft = make_checkpoints(root)
    return root, str(base), tuple(str(f) for f in ft)


def wait(predicate, timeout_s=20.0):
    return wait_until(predicate, timeout_s, "the model manager", poll_s=0.01)


def test_checkpoint_paths_are_confined_to_the_root(ckpts, tmp_path):
    root, base, _ = ckpts
    assert resolve_checkpoint("base", str(root)) == base
    with pytest.raises(ConfigError, match="outside checkpoint_root"):
        resolve_checkpoint(str(tmp_path), str(root))
    with pytest.raises(ConfigError, match="outside checkpoint_root"):
        resolve_checkpoint("../x", str(root))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_checkpoint("missing", str(root))


def test_requests_coalesce_swaps_happen_only_when_taken_and_failures_keep_the_old_model(ckpts):
    root, base, ft = ckpts
    manager = ModelManager()
    first = manager.load_initial(MergeRequest(base, ft, 0.5))
    manager.start()
    try:
        for alpha in (0.1, 0.2, 0.3):
            manager.request(MergeRequest(base, ft, alpha))
        wait(lambda: manager._ready is not None)
        assert manager.serving is first  # nothing changes until the control thread takes the swap
        swapped = manager.take_swap()
        wait(manager.idle)
        last = manager.take_swap() or swapped
        assert last.request.alpha == 0.3 and manager.serving is last
        assert manager.counts["builds"] <= 3 and last.fingerprint != first.fingerprint
        corrupt = root / "corrupt"
        shutil.copytree(ft[0], corrupt, dirs_exist_ok=True)
        (corrupt / "model.safetensors").write_bytes(b"garbage")
        manager.request(MergeRequest(base, (str(corrupt),), 0.3))
        wait(manager.idle)
        assert manager.take_swap() is None and manager.serving is last
        assert "old model kept" in manager.last_error
    finally:
        manager.stop()


def test_control_loop_waits_for_fresh_streams_and_publishes_safe_commands(ckpts):
    _, base, ft = ckpts
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, 0.5))
    clock = [10**9]
    inputs = NodeInputs(InputSettings(), ("exterior", "wrist"))  # ages 0.5 s (cameras, gripper), 0.25 s (joints)
    streams = inputs.streams
    published, events = [], []
    loop = ControlLoop(inputs, manager, ChunkExecutor(ExecutorConfig(execute_steps=3)),
                       lambda: clock[0], published.append, 1 / 15, lambda: "", lambda *event: events.append(event))
    assert loop.step() is None and "no message" in loop.state.reason
    for cam, image in frames().items():
        streams.put(cam, image, clock[0])
    streams.put(JOINTS, HOME_Q, clock[0])
    streams.put(GRIPPER, gripper_position(FINGERS, 0.08), clock[0])
    assert loop.step() is None and "instruction" in loop.state.reason
    streams.put(INSTR, INSTRUCTION, clock[0])
    done = loop.step()
    assert done is not None and done.model is manager.serving and done.plan.actions_executed == 3
    clock[0] += 10**9  # one second later every stream is stale
    assert loop.step() is None and loop.state.state == "waiting" and "stale" in loop.state.reason
    streams.put(JOINTS, np.full(7, np.nan), clock[0])  # a NaN state never reaches the executor unnoticed
    for cam, image in frames().items():
        streams.put(cam, image, clock[0])
    streams.put(GRIPPER, 0.25, clock[0])
    assert loop.step() is None and loop.state.state == "waiting"  # refused by the policy, reported, not raised
    assert "policy refused the observation" in loop.state.reason and "non-finite" in loop.state.reason
    assert loop.step() is None and len(published) == 1
    assert [msg for _, msg in events].count(loop.state.reason + "; nothing is commanded until it is fixed") == 1


def test_an_inactive_controller_holds_commanding_back_and_the_running_motion_is_stopped(ckpts):
    """Issue 12: a joint_trajectory_controller drops trajectories while inactive; the loop says so, stops, and holds
    the policy paused until ~/resume (review: it used to restart on its own when the controller came back)."""
    _, base, ft = ckpts
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, 0.5))
    clock = [10**9]
    inputs = NodeInputs(InputSettings(gripper_states_topic=""), ("exterior", "wrist"))
    streams = inputs.streams
    published, stops, blocked = [], [], [None]
    loop = ControlLoop(inputs, manager, ChunkExecutor(ExecutorConfig(execute_steps=3)),
                       lambda: clock[0], published.append, 1 / 15, lambda: INSTRUCTION, lambda *event: None,
                       send_stop=stops.append, blocked=lambda: blocked[0])
    for cam, image in frames().items():
        streams.put(cam, image, clock[0])
    streams.put(JOINTS, HOME_Q, clock[0])
    assert loop.step() is not None and loop.state.state == "commanding"
    clock[0] += 10**8  # 0.1 s into a 0.2 s trajectory
    blocked[0] = "controller 'fr3_arm_controller' is inactive"
    assert loop.step() is None and loop.state.state == "waiting" and "inactive" in loop.state.reason
    assert len(published) == 1 and len(stops) == 1 and len(stops[0].times_s) == 1
    blocked[0] = None  # active again: the policy stays paused until someone resumes it
    for cam, image in frames().items():
        streams.put(cam, image, clock[0])
    streams.put(JOINTS, HOME_Q, clock[0])
    assert loop.step() is None and loop.state.state == "paused" and "~/resume" in loop.state.reason
    loop.resume()
    assert loop.step() is not None and len(published) == 2


def test_a_pause_during_inference_sends_nothing(ckpts):
    """Review finding: ~/pause was checked before inference only, so the chunk being computed still went out."""
    _, base, ft = ckpts
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, 0.5))
    inputs = NodeInputs(InputSettings(gripper_states_topic=""), ("exterior", "wrist"))
    published = []
    loop = ControlLoop(inputs, manager, ChunkExecutor(ExecutorConfig(execute_steps=3)), lambda: 10**9,
                       published.append, 1 / 15, lambda: INSTRUCTION, lambda *event: None)
    for cam, image in frames().items():
        inputs.streams.put(cam, image, 10**9)
    inputs.streams.put(JOINTS, HOME_Q, 10**9)
    policy = manager.serving.policy
    predict = policy.predict

    def predict_then_pause(obs):  # the real model; the operator's ~/pause lands while it runs
        chunk = predict(obs)
        loop.pause("paused by ~/pause")
        return chunk

    policy.predict = predict_then_pause
    assert loop.step() is None and published == [] and loop.state.state == "paused"


def test_execution_settings_change_at_the_next_tick_all_at_once(ckpts):
    """Review finding: `ros2 param set` wrote the executor's settings one by one while a plan could be running."""
    _, base, ft = ckpts
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, 0.5))
    loop = ControlLoop(NodeInputs(InputSettings(), ("exterior", "wrist")), manager,
                       ChunkExecutor(ExecutorConfig(execute_steps=3)), lambda: 10**9, lambda done: None, 1 / 15,
                       lambda: INSTRUCTION, lambda *event: None)
    loop.update_executor(speed_scale=0.5)
    loop.update_executor(min_lead_time_s=0.1)  # a second change before the tick keeps the first
    assert loop.executor.config.speed_scale == 1.0  # nothing changes under a plan that may be running
    with pytest.raises(ConfigError, match="speed_scale"):
        loop.update_executor(speed_scale=0.0)
    loop.step()
    config = loop.executor.config
    assert (config.speed_scale, config.min_lead_time_s) == (0.5, 0.1)
    assert loop.executor.limits.dq_max[0] == pytest.approx(2.62 * 0.5)


def test_a_worker_whose_stop_timed_out_is_never_started_twice():
    """Issue 13: a stop that times out used to drop the handle, so the next activate ran two control threads."""
    from retain_ros.ros.worker_thread import WorkerThread

    release, started = threading.Event(), []

    def body():
        started.append(1)
        release.wait()  # a hung inference: ignores the stop request until released

    worker = WorkerThread("test_worker", body)
    worker.start()
    assert worker.stop(timeout_s=0.01) is False and worker.running
    with pytest.raises(RuntimeError, match="still running"):
        worker.start()
    release.set()
    assert worker.stop() is True and not worker.running
    release.clear()
    worker.start()
    assert len(started) in (1, 2) and worker.running
    release.set()
    assert worker.stop() is True
    assert len(started) == 2


def test_fresh_snapshot_holds_every_stream_or_says_why_not():
    """Issue 13: a check and a separate read let a stream fail in between and raise inside observation()."""
    streams = StreamSet({"a": 1.0, "b": 0.0})
    samples, problems = streams.fresh(0)
    assert problems == {"a": "no message received yet", "b": "no message received yet"} and samples == {}
    streams.put("a", 1, 0)
    streams.put("b", "text", 0)
    samples, problems = streams.fresh(10**9 // 2)
    assert problems == {} and set(samples) == {"a", "b"}
    streams.fail("a", "bad encoding")
    samples, problems = streams.fresh(10**9 // 2)
    assert problems == {"a": "bad encoding"} and "a" not in samples
    streams.put("a", 2, 0)
    samples, problems = streams.fresh(2 * 10**9)  # b (max age 0) never goes stale, a does
    assert set(problems) == {"a"} and "stale" in problems["a"] and samples["a"].value == 2
