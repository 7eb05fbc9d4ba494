"""ModelManager, StreamSet and ControlLoop as plain logic: swaps between chunks, coalescing, failures keep serving."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import warnings
import weakref

import numpy as np
import pytest
import torch
from fake_robot import FINGERS, HOME_Q, INSTRUCTION, frames
from ros_helpers import make_checkpoints, reference_id

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
from retain_ros.control.inputs import GRIPPER, INSTRUCTION as INSTR, JOINTS, InputSettings, NodeInputs
from retain_ros.control.messages import JointReading
from retain_ros.control.streams import StreamSet
from retain_ros.errors import ConfigError
from retain_ros.gripper import gripper_position
from retain_ros.paths import resolve_checkpoint
from retain_ros.control.control_loop import ControlLoop
from retain_ros.serving.model_manager import MergeRequest, ModelManager
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import Observation
from retain_ros.policy.reference_policy import ReferencePolicy
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
        assert manager.counts["builds"] <= 3 and last.weights_id != first.weights_id
        corrupt = root / "corrupt"
        shutil.copytree(ft[0], corrupt, dirs_exist_ok=True)
        (corrupt / "model.safetensors").write_bytes(b"garbage")
        manager.request(MergeRequest(base, (str(corrupt),), 0.3))
        wait(manager.idle)
        assert manager.take_swap() is None and manager.serving is last
        assert "old model kept" in manager.last_error
    finally:
        manager.stop()


def swap_when_ready(manager: ModelManager):
    wait(lambda: manager._ready is not None)
    return manager.take_swap()


def live_tensor_bytes() -> tuple[int, int]:
    """(bytes of every CPU tensor storage alive in this process, number of ReferencePolicy objects alive)."""
    gc.collect()
    seen, total, policies = set(), 0, 0
    with warnings.catch_warnings():  # isinstance on some of torch's deprecated module attributes warns
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        tensors = [o for o in objects if isinstance(o, torch.Tensor)]
        policies = sum(isinstance(o, ReferencePolicy) for o in objects)
    for obj in tensors:
        if obj.device.type == "cpu":
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total, policies


@pytest.mark.parametrize("layout", ["resident", "streamed"])
def test_an_alpha_change_is_merged_into_the_standby_copy_and_the_swap_copies_nothing(ckpts, layout):
    """The control thread's swap is a reference swap: the serving tensors are never written, then exchanged.

    With a budget of one spare copy, the two copies take turns: the merge the swap replaced is overwritten next."""
    _, base, ft = ckpts
    manager = ModelManager(cache_budget_bytes=0)
    first = manager.load_initial(MergeRequest(base, ft, 0.5, layout=layout))
    assert first.memory.layout == layout
    policy = first.policy
    serving = {n: (t.data_ptr(), t.clone()) for n, t in policy.named_parameters()}
    manager.start()
    try:
        manager.request(MergeRequest(base, ft, 0.8, layout=layout))
        wait(lambda: manager._ready is not None)
        assert all(torch.equal(t, serving[n][1]) for n, t in policy.named_parameters())  # untouched while serving
        swapped = manager.take_swap()
        assert swapped.policy is policy and swapped.promote and swapped.generation == 2
        after = dict(policy.named_parameters())
        assert all(after[n].data_ptr() != ptr for n, (ptr, _) in serving.items())  # other storage: no copy made
        expected = ResidentMerger.from_checkpoints(base, list(ft)).merge(0.8).tensors
        assert all(torch.equal(after[n], expected[n]) for n in expected)
        manager.request(MergeRequest(base, ft, 0.3, layout=layout))  # the old copy is the standby now (evicted)
        third = swap_when_ready(manager)
        assert {n: t.data_ptr() for n, t in policy.named_parameters()} == {n: p for n, (p, _) in serving.items()}
        assert third.weights_id not in (first.weights_id, swapped.weights_id)
    finally:
        manager.stop()


def test_chunks_racing_live_merges_each_come_from_one_complete_merge(ckpts):
    """A control thread predicting and swapping as fast as it can, while alphas change: every output is exactly the
    output of the merge its weights identity names (base and finetuned are unrelated: a half merge matches none)."""
    _, base, ft = ckpts
    alphas = (0.5, 0.2, 0.9, 0.35, 0.65)
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, alphas[0]))
    obs = Observation(frames(), HOME_Q, gripper_position(FINGERS, 0.08), INSTRUCTION, 0)
    reference = ResidentMerger.from_checkpoints(base, list(ft))
    check_policy = ReferencePolicy.from_pretrained(base)
    expected = {}
    for alpha in alphas:
        check_policy.load_merged(reference.merge(alpha).tensors)
        weights_id = reference_id(manager, alpha)
        expected[weights_id] = check_policy.predict(obs).actions
    seen, stop = [], threading.Event()

    def control_thread():
        while not stop.is_set():
            manager.take_swap()
            model = manager.serving
            seen.append((model.weights_id, model.policy.predict(obs).actions))

    thread = threading.Thread(target=control_thread)
    manager.start()
    thread.start()
    try:
        wait(lambda: seen)  # the first model has served a chunk
        for alpha in alphas[1:] * 3:
            manager.request(MergeRequest(base, ft, alpha))
            wait(lambda: manager.idle() and manager.serving.request.alpha == alpha)
    finally:
        stop.set()
        thread.join()
        manager.stop()
    assert len({w for w, _ in seen}) == len(alphas) and manager.counts["swaps"] == len(alphas[1:]) * 3
    for weights_id, actions in seen:
        np.testing.assert_array_equal(actions, expected[weights_id])


@pytest.mark.parametrize("layout", ["resident", "streamed"])
def test_a_failed_reload_keeps_the_old_model_serving_and_frees_what_it_allocated(ckpts, tmp_path, layout):
    _, base, ft = ckpts
    manager = ModelManager()
    manager.load_initial(MergeRequest(base, ft, 0.5, layout=layout))
    manager.start()
    try:
        manager.request(MergeRequest(base, ft, 0.7, layout=layout))
        serving = swap_when_ready(manager)
        wait(lambda: manager.standby_ready)
        obs = Observation(frames(), HOME_Q, gripper_position(FINGERS, 0.08), INSTRUCTION, 0)
        before_actions = serving.policy.predict(obs).actions
        model_bytes = sum(t.numel() * t.element_size() for _, t in serving.policy.named_parameters())
        before_bytes, before_policies = live_tensor_bytes()
        groups = manager.groups

        # caught from the headers (the preset has no such group): nothing is freed or loaded
        manager.request(MergeRequest(base, ft, 0.5, group_alpha={"vision": 0.2}, preset="all", reload=True,
                                     layout=layout))
        wait(manager.idle)
        assert manager.take_swap() is None and manager.serving is serving
        assert "unknown group 'vision'" in manager.last_error and "old model kept" in manager.last_error
        bytes_now, policies_now = live_tensor_bytes()
        assert policies_now == before_policies and abs(bytes_now - before_bytes) < model_bytes / 2
        assert manager.standby_ready and manager.groups == groups

        # caught after the new model was loaded (another architecture): it is freed. To make room for it the standby
        # copy was freed (made again by the worker), and resident inputs too (read again at the next change)
        other_base, other_ft = make_checkpoints(tmp_path / "other", horizon=3)
        manager.request(MergeRequest(str(other_base), (str(other_ft[0]),), 0.5, reload=True, layout=layout))
        wait(manager.idle)
        assert manager.take_swap() is None and manager.serving is serving
        assert "different architecture" in manager.last_error
        wait(lambda: manager.standby_ready)
        bytes_now, policies_now = live_tensor_bytes()
        assert policies_now == before_policies and bytes_now < before_bytes + model_bytes / 2
        if layout == "resident":
            assert bytes_now < before_bytes - 2.5 * model_bytes  # the standby copy and both inputs
        assert manager.groups == groups  # the node still checks group alphas against the serving preset
        np.testing.assert_array_equal(serving.policy.predict(obs).actions, before_actions)

        manager.request(MergeRequest(base, ft, 0.6, layout=layout))  # alpha changes work as before
        again = swap_when_ready(manager)
        assert again.request.alpha == 0.6 and again.policy is serving.policy and manager.last_error == ""
    finally:
        manager.stop()


def test_a_reload_never_holds_three_copies_of_the_model(ckpts):
    """A reload frees the standby copy first, loads the new model next to the serving one, and makes the new model's
    standby copy only once the replaced model is gone."""
    _, base, ft = ckpts
    manager = ModelManager()
    first = manager.load_initial(MergeRequest(base, ft, 0.5))
    model_bytes = sum(t.numel() * t.element_size() for _, t in first.policy.named_parameters())
    manager.start()
    try:
        wait(lambda: manager.standby_ready)
        two_copies, _ = live_tensor_bytes()
        manager.request(MergeRequest(base, ft, 0.5, reload=True))
        reloaded = swap_when_ready(manager)
        assert reloaded.policy is not first.policy and reloaded.weights_id == first.weights_id
        retired = weakref.ref(first.policy)
        time.sleep(1.0)  # the worker would have made the standby copy by now: it must wait for the old model
        assert retired() is not None and not manager.standby_ready
        assert live_tensor_bytes()[0] < two_copies + model_bytes / 2, model_bytes  # a third copy would add one
        del first
        gc.collect()
        assert retired() is None
        wait(lambda: manager.standby_ready)
        assert live_tensor_bytes()[0] < two_copies + model_bytes / 2
    finally:
        manager.stop()


def test_the_worker_survives_a_failure_to_make_the_standby_copy_and_close_frees_the_models(ckpts):
    """Review finding: an error while making the standby copy (a GPU out of memory) ended the worker thread, and
    changes then stayed pending for ever; and the node's cleanup kept every model copy alive."""
    _, base, ft = ckpts
    manager = ModelManager()
    first = manager.load_initial(MergeRequest(base, ft, 0.5))
    real = type(first.policy).weight_targets
    failures = []

    def out_of_memory_once(self, which="standby"):
        if which == "standby" and not failures:
            failures.append(which)
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, which)

    first.policy.weight_targets = out_of_memory_once.__get__(first.policy)
    manager.start()
    try:
        wait(lambda: failures)
        manager.request(MergeRequest(base, ft, 0.8))
        swapped = swap_when_ready(manager)
        assert swapped.request.alpha == 0.8 and manager.last_error == ""
    finally:
        del first.policy.weight_targets
        manager.stop()
    policy = weakref.ref(first.policy)
    del first, swapped
    assert policy() is not None  # the manager still holds it
    assert manager.close()
    assert policy() is None and manager.serving is None


def test_equal_recipes_give_equal_content_hashes_computed_off_the_critical_path(ckpts):
    _, base, ft = ckpts
    manager = ModelManager(content_hash=True)
    first = manager.load_initial(MergeRequest(base, ft, 0.3))
    assert manager.content_sha256 == ""  # not hashed while building: the worker does it when idle
    manager.start()
    try:
        hashes = {}
        for alpha in (0.3, 0.7, 0.3):
            if alpha != manager.serving.request.alpha:
                manager.request(MergeRequest(base, ft, alpha))
                swap_when_ready(manager)
            wait(lambda: manager.content_sha256 != "")
            hashes.setdefault(manager.serving.weights_id, set()).add(manager.content_sha256)
        merged = ResidentMerger.from_checkpoints(base, list(ft))
        assert hashes == {first.weights_id: {merged.merge(0.3).fingerprint()},
                          reference_id(manager, 0.7): {merged.merge(0.7).fingerprint()}}
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
    streams.put(JOINTS, JointReading(HOME_Q), clock[0])
    streams.put(GRIPPER, gripper_position(FINGERS, 0.08), clock[0])
    assert loop.step() is None and "instruction" in loop.state.reason
    streams.put(INSTR, INSTRUCTION, clock[0])
    done = loop.step()
    assert done is not None and done.model is manager.serving and done.plan.actions_executed == 3
    clock[0] += 10**9  # one second later every stream is stale
    assert loop.step() is None and loop.state.state == "waiting" and "stale" in loop.state.reason
    streams.put(JOINTS, JointReading(np.full(7, np.nan)), clock[0])  # a NaN state never reaches the executor unnoticed
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
    streams.put(JOINTS, JointReading(HOME_Q), clock[0])
    assert loop.step() is not None and loop.state.state == "commanding"
    clock[0] += 10**8  # 0.1 s into a 0.2 s trajectory
    blocked[0] = "controller 'fr3_arm_controller' is inactive"
    assert loop.step() is None and loop.state.state == "waiting" and "inactive" in loop.state.reason
    assert len(published) == 1 and len(stops) == 1 and len(stops[0].times_s) == 1
    blocked[0] = None  # active again: the policy stays paused until someone resumes it
    for cam, image in frames().items():
        streams.put(cam, image, clock[0])
    streams.put(JOINTS, JointReading(HOME_Q), clock[0])
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
    inputs.streams.put(JOINTS, JointReading(HOME_Q), 10**9)
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
    from retain_ros.worker_thread import WorkerThread

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
