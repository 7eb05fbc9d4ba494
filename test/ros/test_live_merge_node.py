"""Live alpha changes from another process, the way `ros2 param set` makes them.

The inputs are constant (FakeRobot), so a chunk is a function of the weights alone: the test recomputes the chunk of
every alpha it sets in its own process and checks that each published chunk equals exactly one of them and carries
that merge's weights identity (the recipe's). With `content_hash` on, the node's `content_sha256` shows the served
weights are bit-identical to the test's own merge. Base and finetuned weights are unrelated, so a half-swapped model
would match none.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fake_robot import FINGERS, HOME_Q, INSTRUCTION, FakeRobot, frames
from ros_helpers import latest_status, make_checkpoints, wait_until
from test_policy_node import STATUS, T, count, start_policy

from retain_ros.merge.live import LiveMerger
from retain_ros.merge.resident import ResidentMerger
from retain_ros.control import messages
from retain_ros.policy.interface import Observation, load_policy
from retain_ros.gripper import gripper_position

NODE = "retain_policy"
CHUNKS = "/retain_policy/action_chunk"


class Expected:
    """Chunks, weights identities and content hashes of the merges the test asks for, computed in this process."""

    def __init__(self, base, finetuned):
        self.policy = load_policy(base)
        self.merger = ResidentMerger.from_checkpoints(base, finetuned)
        self.recipes = LiveMerger.from_checkpoints(base, finetuned)
        self.obs = Observation(frames(), HOME_Q, gripper_position(FINGERS, 0.08), INSTRUCTION, 0)
        self.by_id: dict[str, np.ndarray] = {}
        self.content: dict[str, str] = {}

    def add(self, alpha) -> str:
        merged = self.merger.merge(alpha)
        self.policy.load_merged(merged.tensors)
        weights_id = self.recipes.recipe_id(merged.alphas)
        self.by_id[weights_id] = self.policy.predict(self.obs).actions
        self.content[weights_id] = merged.fingerprint()
        return weights_id

    def check(self, chunk) -> None:
        assert chunk.weights_id in self.by_id, "chunk from an unknown (half-updated?) model"
        expected = self.by_id[chunk.weights_id]
        actions, _ = messages.action_chunk_arrays(chunk)
        assert np.allclose(actions, expected, atol=1e-4), "chunk does not match its weights identity's merge"


def serving(observer, weights_id):
    def check():
        s = latest_status(observer)
        return s if s and s["weights_id"] == weights_id and s["state"] == "commanding" else None
    return check


@pytest.mark.slow
def test_alpha_changes_swap_whole_models_and_bad_changes_are_refused(ros, tiny_checkpoints, tmp_path):
    _, _, observer, _ = ros
    root, base, finetuned = tiny_checkpoints
    expected = Expected(base, finetuned)
    fp_half = expected.add(0.5)
    # speed_scale=1 is an integer for a double parameter, as `speed_scale:=1` or a params file's `speed_scale: 1`
    proc = start_policy(ros, tiny_checkpoints, execute_steps=2, content_hash=True, speed_scale=1)
    FakeRobot(observer.node)
    wait_until(serving(observer, fp_half), 60, "serving alpha 0.5", proc)
    status = wait_until(lambda: (s := latest_status(observer)) and s["content_sha256"] and s, 30, "content hash", proc)
    assert status["content_sha256"] == expected.content[fp_half]  # the served weights are the merge, bit for bit

    # one change
    fp_75 = expected.add(0.75)
    results = observer.set_parameters(NODE, {"alpha": 0.75})
    assert results[0].successful, results[0].reason
    status = wait_until(serving(observer, fp_75), 30, "serving alpha 0.75", proc)
    assert status["alphas"] == {g: [0.75] for g in ("vision", "language", "action")}
    assert status["reload_s"] > 0 and status["generation"] == 2
    assert status["memory"]["layout"] == "streamed"  # the CPU default: two model copies, inputs in the page cache
    status = wait_until(lambda: (s := latest_status(observer)) and s["content_sha256"] and s, 30, "content hash", proc)
    assert status["weights_id"] == fp_75 and status["content_sha256"] == expected.content[fp_75]

    # a burst coalesces: nine requests at once, far fewer builds, the last one wins
    burst = [round(0.1 * i, 1) for i in range(1, 10)]
    for alpha in burst:
        expected.add(alpha)
    builds = status["merge_builds"]
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(observer.node, NODE)
    futures = [client.set_parameters([Parameter("alpha", value=a)]) for a in burst]
    wait_until(lambda: all(f.done() for f in futures), 30, "burst answered", proc)
    assert all(f.result().results[0].successful for f in futures)
    fp_last = expected.add(0.9)
    status = wait_until(serving(observer, fp_last), 30, "serving the last alpha of the burst", proc)
    status = wait_until(lambda: (s := latest_status(observer)) and not s["pending"] and s, 30, "idle merger", proc)
    assert status["weights_id"] == fp_last
    assert status["merge_builds"] - builds < len(burst)

    # group alpha, given as the integer 0 (`ros2 param set /retain_policy alpha_action 0` sends one)
    fp_group = expected.add({"default": 0.9, "action": 0.0})
    assert observer.set_parameters(NODE, {"alpha_action": 0})[0].successful
    wait_until(serving(observer, fp_group), 30, "serving the group alpha", proc)

    # refused at once, with a reason: out of range, wrong type, -0.5 for a group, outside root, missing
    outside = tmp_path / "outside_ft"
    shutil.copytree(finetuned[0], outside)
    bad = {"alpha": 1.5, "alpha_vision": -0.5}
    for name, value in bad.items():
        result = observer.set_parameters(NODE, {name: value})[0]
        assert not result.successful and result.reason, (name, value)
    assert not observer.set_parameters(NODE, {"alpha": "high"})[0].successful
    result = observer.set_parameters(NODE, {"finetuned_checkpoints": [str(outside)]})[0]
    assert not result.successful and "outside checkpoint_root" in result.reason
    result = observer.set_parameters(NODE, {"finetuned_checkpoints": [str(root / "nope")]})[0]
    assert not result.successful and "does not exist" in result.reason

    # accepted (the files exist) but failing to load: the old model keeps serving, the status says why
    corrupt = root / "corrupt"
    shutil.copytree(finetuned[0], corrupt, dirs_exist_ok=True)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    wrong_arch, _ = make_checkpoints(root / "other_arch", horizon=3)
    for path, words in ((corrupt, "corrupt"), (wrong_arch, "other_arch")):
        failures = latest_status(observer)["merge_failures"]
        assert observer.set_parameters(NODE, {"finetuned_checkpoints": [str(path)]})[0].successful
        status = wait_until(lambda: (s := latest_status(observer)) and s["merge_failures"] > failures and s, 30,
                            f"failure report for {words}", proc)
        assert status["weights_id"] == fp_group and "old model kept" in status["last_error"]
        assert status["state"] == "commanding"

    # back to the good checkpoint, then ~/reload re-reads the files: same weights, new generation
    assert observer.set_parameters(NODE, {"finetuned_checkpoints": [str(finetuned[0])]})[0].successful
    status = wait_until(lambda: (s := latest_status(observer)) and s["weights_id"] == fp_group and
                        not s["pending"] and s["last_error"] == "" and s, 30, "good checkpoint again", proc)
    generation = status["generation"]
    assert observer.call_trigger("/retain_policy/reload").success
    wait_until(lambda: (s := latest_status(observer)) and s["generation"] > generation and
               s["weights_id"] == fp_group, 30, "reloaded", proc)

    # every chunk published during all of this came from exactly one complete merge
    chunks = observer.received(CHUNKS)
    assert len(chunks) >= 10
    for chunk in chunks:
        expected.check(chunk)
    assert count(observer, T.arm_command) >= len(chunks) - 1
    assert len(observer.received(STATUS)) > 0


@pytest.mark.slow
def test_one_model_copy_changes_alpha_in_place_and_commands_again(ros, tiny_checkpoints):
    """swap_mode in_place (a model that does not fit twice): each change merges into the serving copy while the arm is
    held, then the node commands again from exactly that merge."""
    _, _, observer, _ = ros
    expected = Expected(*tiny_checkpoints[1:])
    fp_half = expected.add(0.5)
    proc = start_policy(ros, tiny_checkpoints, execute_steps=2, content_hash=True, swap_mode="in_place")
    FakeRobot(observer.node)
    status = wait_until(serving(observer, fp_half), 60, "serving alpha 0.5", proc)
    assert status["memory"]["copies"] == 1 and status["memory"]["in_place"] == "swap_mode in_place"
    for alpha in (0.75, 0.25):
        weights_id = expected.add(alpha)
        assert observer.set_parameters(NODE, {"alpha": alpha})[0].successful
        wait_until(serving(observer, weights_id), 30, f"commanding again at alpha {alpha}", proc)
    status = wait_until(lambda: (s := latest_status(observer)) and s["content_sha256"] and s, 30, "content hash", proc)
    assert status["content_sha256"] == expected.content[weights_id]  # the serving copy is that merge, bit for bit
    assert status["generation"] == 3 and status["memory"]["copies"] == 1 and status["rejected_chunks"] == 0
    for chunk in observer.received(CHUNKS):
        expected.check(chunk)
