"""One model copy (swap_mode in_place): the arm is held while an alpha change is merged into the serving weights.

Plain logic with the real ModelManager, ControlLoop, ChunkExecutor and reference VLA; the node's parameter is tested in
test_live_merge_node.py.
"""

from __future__ import annotations

import re
import shutil
import threading

import numpy as np
import pytest
import torch
from fake_robot import HOME_Q, INSTRUCTION, frames
from ros_helpers import reference_id

from retain_ros.control.chunk_executor import ChunkExecutor, ExecutorConfig
from retain_ros.control.control_loop import ControlLoop
from retain_ros.control.inputs import JOINTS, InputSettings, NodeInputs
from retain_ros.control.messages import JointReading
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.reference_policy import ReferencePolicy
from retain_ros.ros.processes import wait_until
from retain_ros.serving.model_manager import MergeRequest, ModelManager, copies_reason

PERIOD_NS = 10**9 // 15


def wait(predicate, timeout_s=30.0):
    return wait_until(predicate, timeout_s, "the model manager", poll_s=0.01)


class Rig:
    """A control loop on a real in-place ModelManager, with streams that stay fresh and a clock stepped by hand."""

    def __init__(self, base: str, ft: tuple[str, ...], alpha: float = 0.5) -> None:
        self.manager = ModelManager(swap_mode="in_place")
        self.first = self.manager.load_initial(MergeRequest(base, ft, alpha))
        self.clock = [10**9]
        self.inputs = NodeInputs(InputSettings(gripper_states_topic=""), ("exterior", "wrist"))
        self.published, self.stops, self.log = [], [], []
        self.loop = ControlLoop(self.inputs, self.manager, ChunkExecutor(ExecutorConfig(execute_steps=3)),
                                lambda: self.clock[0], self._publish, 1 / 15, lambda: INSTRUCTION,
                                lambda *event: None, send_stop=self._stop)
        self.manager.on_hold = self._hold

    def _publish(self, done) -> None:
        self.published.append(done)
        self.log.append(("publish", done.model.weights_id))

    def _stop(self, plan) -> None:
        self.stops.append(plan)
        self.log.append(("stop", plan.is_stop))

    def _hold(self, reason: str) -> None:
        with self.loop._gate:  # whether a command still runs, read where the hold decides it (the gate is reentrant)
            previous = self.loop.executor._previous
            moving = previous is not None and (self.clock[0] - previous.sent_ns) * 1e-9 < previous.duration_s
            self.loop.hold_for_merge(reason)
        self.log.append(("hold", (float(re.search(r"alphas ([0-9.]+)", reason).group(1)), moving)))

    def tick(self):
        """One control period later, every stream fresh, one loop step."""
        self.clock[0] += PERIOD_NS
        for cam, image in frames().items():
            self.inputs.streams.put(cam, image, self.clock[0])
        self.inputs.streams.put(JOINTS, JointReading(HOME_Q), self.clock[0])
        return self.loop.step()


def test_one_copy_holds_the_arm_while_alpha_changes_are_merged_into_the_serving_weights(tiny_checkpoints):
    """Every chunk is exactly the output of the merge its weights identity names; each merge began with a stop of
    the running motion, and after it no chunk of the previous weights went out."""
    _, base, ft = tiny_checkpoints
    base, ft = str(base), tuple(str(f) for f in ft)
    rig = Rig(base, ft)
    manager = rig.manager
    assert manager.in_place == "swap_mode in_place" and manager.standby_ready  # no standby copy is wanted
    serving_ptrs = {n: t.data_ptr() for n, t in rig.first.policy.named_parameters()}
    alphas = (0.8, 0.2, 0.65)
    reference, checks, ids = ResidentMerger.from_checkpoints(base, list(ft)), {}, {}
    for alpha in (0.5, *alphas):  # a policy per merge, to recompute every chunk
        ids[alpha] = reference_id(manager, alpha)
        checks[ids[alpha]] = ReferencePolicy.from_pretrained(base)
        checks[ids[alpha]].load_merged(reference.merge(alpha).tensors)
    policy, observations = rig.first.policy, {}
    predict = policy.predict

    def recording_predict(obs):  # the real model; remembers what it saw
        chunk = predict(obs)
        observations[id(chunk)] = obs
        return chunk

    policy.predict = recording_predict
    stop = threading.Event()

    def control_thread():
        while not stop.is_set():
            rig.tick()

    thread = threading.Thread(target=control_thread)
    manager.start()
    thread.start()
    try:
        wait(lambda: rig.published)
        for alpha in alphas:
            sent = len(rig.published)
            manager.request(MergeRequest(base, ft, alpha))
            wait(lambda: manager.idle() and manager.serving.request.alpha == alpha and not manager.holding)
            wait(lambda: len(rig.published) > sent and rig.published[-1].model.weights_id == ids[alpha])
    finally:
        stop.set()
        thread.join()
        manager.stop()
    assert manager.counts["swaps"] == len(alphas) and manager.counts["failures"] == 0
    assert {n: t.data_ptr() for n, t in manager.serving.policy.named_parameters()} == serving_ptrs  # one copy
    assert manager.serving.policy.spare_copies() == () and manager.memory()["copies"] == 1
    for done in rig.published:  # none from half-merged weights, none under another merge's name
        obs = observations[id(done.chunk)]
        np.testing.assert_array_equal(done.chunk.actions, checks[done.model.weights_id].predict(obs).actions)
    holds = [i for i, (kind, _) in enumerate(rig.log) if kind == "hold"]
    assert [rig.log[i][1][0] for i in holds] == list(alphas)
    for i in holds:
        alpha, moving = rig.log[i][1]
        if moving:
            assert rig.log[i - 1] == ("stop", True)  # the hold stopped the running motion first
        after = [wid for kind, wid in rig.log[i:] if kind == "publish"]
        assert after and after[0] == ids[alpha]  # the next command is from the new weights
    assert any(rig.log[i][1][1] for i in holds)  # (at least one hold met a running motion)


def test_a_failed_in_place_merge_restores_the_serving_weights_and_releases_the_arm(tiny_checkpoints):
    """A failure after the merge wrote the serving weights (here: all of them, with other alphas): the serving recipe
    is merged again, exactly, and the loop commands from it."""
    _, base, ft = tiny_checkpoints
    base, ft = str(base), tuple(str(f) for f in ft)
    rig = Rig(base, ft)
    manager = rig.manager
    before = {n: t.clone() for n, t in rig.first.policy.named_parameters()}
    assert rig.tick() is not None
    merger = manager._merger
    real = merger.merge_into

    def fails_after_writing(alpha, targets):  # a device error half-way: the targets hold other weights
        merger.merge_into = real
        real(0.9, targets)
        raise RuntimeError("device error (injected)")

    merger.merge_into = fails_after_writing
    manager.start()
    try:
        manager.request(MergeRequest(base, ft, 0.8))
        wait(manager.idle)
        assert "old model kept" in manager.last_error and "device error" in manager.last_error
        assert manager.holding == "" and manager.serving is rig.first
        after = dict(manager.serving.policy.named_parameters())
        assert all(torch.equal(after[n], t) for n, t in before.items())
        done = rig.tick() or rig.tick()
        assert done is not None and done.model is rig.first
        manager.request(MergeRequest(base, ft, 0.8))  # the next change merges as usual
        wait(lambda: rig.tick() is not None and manager.serving.request.alpha == 0.8)  # the tick takes the swap
    finally:
        manager.stop()


def test_weights_that_cannot_be_restored_keep_the_arm_held_until_a_reload(tiny_checkpoints, tmp_path):
    """The finetuned file rewritten on disk: the merge and its restore are refused, nothing is commanded, and ~/reload
    (a request of a new epoch) brings fresh weights and commanding back."""
    root, base, ft = tiny_checkpoints
    shutil.copytree(root, tmp_path / "ck")
    base, ft = str(tmp_path / "ck" / "base"), (str(tmp_path / "ck" / "ft1"),)
    rig = Rig(base, ft)
    manager = rig.manager
    assert rig.tick() is not None
    with open(f"{ft[0]}/model.safetensors", "ab") as f:
        f.write(b"\0")
    manager.start()
    try:
        manager.request(MergeRequest(base, ft, 0.8))
        wait(manager.idle)
        assert "the arm is held" in manager.last_error and "rewritten on disk" in manager.last_error
        assert "serving weights are broken" in manager.holding and "~/reload" in manager.holding
        sent = len(rig.published)
        assert rig.tick() is None and rig.loop.state.state == "holding" and len(rig.published) == sent
        with open(f"{ft[0]}/model.safetensors", "r+b") as f:  # the file fixed, then ~/reload
            f.truncate(f.seek(0, 2) - 1)
        manager.request(MergeRequest(base, ft, 0.8, epoch=1))
        wait(lambda: rig.tick() is not None)
        assert manager.holding == "" and manager.serving.request.alpha == 0.8
        assert rig.published[-1].model.weights_id == reference_id(manager, 0.8)
    finally:
        manager.stop()


def test_auto_uses_one_copy_where_two_do_not_fit_or_the_second_cannot_be_made(tiny_checkpoints):
    assert copies_reason(10**6, 8 * 10**9) == ""
    reason = copies_reason(14_500_000_000, 9_000_000_000)  # fp32 pi0.5 on a 24 GB card, one copy loaded
    assert "two copies do not fit" in reason and "14.50 GB" in reason
    _, base, ft = tiny_checkpoints
    base, ft = str(base), tuple(str(f) for f in ft)
    for mode, fallback in (("auto", True), ("standby", False)):
        manager = ModelManager(swap_mode=mode)
        first = manager.load_initial(MergeRequest(base, ft, 0.5))
        assert manager.in_place == ""  # a tiny model fits twice
        policy = first.policy
        real = type(policy).weight_targets

        def out_of_memory(self, which="standby", real=real):
            if which != "serving":
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(self, which)

        policy.weight_targets = out_of_memory.__get__(policy)
        manager.start()
        try:
            wait(lambda: manager.counts["requests"] == 0 and (manager.in_place or manager._standby_of is policy))
            manager.request(MergeRequest(base, ft, 0.8))
            wait(lambda: manager._ready is not None or manager.last_error)  # merged (not yet swapped in), or refused
            if fallback:  # reported, and the change merged in place
                assert "standby copy could not be made" in manager.in_place
                assert "out of memory" in manager.memory()["in_place"] and manager.memory()["copies"] == 1
                assert manager.take_swap().in_place and manager.serving.request.alpha == 0.8
            else:  # standby insists on two copies: the change is refused, the old model serves
                assert manager.in_place == "" and "out of memory" in manager.last_error
                assert manager.take_swap() is None and manager.serving is first
        finally:
            manager.stop()
            del policy.weight_targets


def test_an_unknown_swap_mode_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="swap_mode='two' is unknown; use one of auto, standby, in_place"):
        ModelManager(swap_mode="two")


def test_the_node_parameter_offers_the_swap_modes_the_manager_has():
    from retain_ros.control.params import SWAP_MODES
    from retain_ros.serving.model_manager import SWAP_MODES as MANAGER_SWAP_MODES

    assert SWAP_MODES == MANAGER_SWAP_MODES
