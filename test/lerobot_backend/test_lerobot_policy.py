"""The LeRobot backend on tiny pi0 / pi0.5 / SmolVLA checkpoints: node observations in, DROID chunks out, live swaps.

Runs in .venv-lerobot (`make test-lerobot`); skipped where LeRobot is not installed.
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lerobot_helpers import KINDS, io_for, node_observations  # noqa: E402

from retain_ros.errors import ConfigError  # noqa: E402
from retain_ros.merge.maths import fingerprint_tensors  # noqa: E402
from retain_ros.merge.resident import ResidentMerger  # noqa: E402
from retain_ros.policy import Policy, load_policy  # noqa: E402
from retain_ros.policy.interface import DROID_DT_S  # noqa: E402
from retain_ros.policy.lerobot_io import LeRobotIO  # noqa: E402
from retain_ros.polling import poll  # noqa: E402


@pytest.fixture(scope="module")
def observations():
    return node_observations(3, seed=0)


def load(checkpoint, kind: str, seed: int = 0):
    return load_policy(checkpoint, seed=seed, io_mapping=io_for(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_predict_on_node_observations_gives_a_finite_droid_chunk(kind, lerobot_checkpoints, observations):
    policy = load(lerobot_checkpoints(kind)[0], kind)
    assert isinstance(policy, Policy)
    assert policy.spec.camera_names == ("exterior", "wrist") and policy.spec.dt_s == pytest.approx(DROID_DT_S)
    for obs in observations:
        chunk = policy.predict(obs)
        assert chunk.actions.shape == (policy.spec.horizon, 8) and chunk.actions.dtype == np.float32
        assert np.all(np.isfinite(chunk.actions))
        assert np.all(np.abs(chunk.actions[:, :7]) <= 1.0) and set(np.unique(chunk.actions[:, 7])) <= {0.0, 1.0}
        assert chunk.observation_stamp_ns == obs.stamp_ns and chunk.space.kind == io_for(kind).action


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_chunk_other_seed_other_chunk(kind, lerobot_checkpoints, observations):
    base = lerobot_checkpoints(kind)[0]
    a, b, c = load(base, kind, seed=0), load(base, kind, seed=0), load(base, kind, seed=1)
    obs = observations[0]
    first = a.predict(obs).actions
    np.testing.assert_array_equal(first, a.predict(obs).actions)
    np.testing.assert_array_equal(first, b.predict(obs).actions)
    assert not np.array_equal(first, c.predict(obs).actions)


@pytest.mark.parametrize("kind", KINDS)
def test_k_samples_come_from_one_batched_forward_and_the_first_is_predict(kind, lerobot_checkpoints, observations):
    policy = load(lerobot_checkpoints(kind)[0], kind)
    obs = observations[0]
    own = policy.predict(obs).actions
    np.testing.assert_array_equal(policy.sample_chunks(obs, 1)[0].actions, own)
    chunks = policy.sample_chunks(obs, 5, noise_scale=1.0, seed=3)
    assert len(chunks) == 5 and all(c.actions.shape == own.shape for c in chunks)
    np.testing.assert_allclose(chunks[0].actions[:, :7], own[:, :7], atol=1e-4)  # batched: float rounding only
    assert np.unique(np.stack([c.actions[:, :7] for c in chunks]).round(4), axis=0).shape[0] == 5
    again = policy.sample_chunks(obs, 5, noise_scale=1.0, seed=3)
    assert all(np.array_equal(a.actions, b.actions) for a, b in zip(chunks, again))


@pytest.mark.parametrize("kind", KINDS)
def test_load_merged_serves_the_resident_merge_and_alpha_0_is_the_base(kind, lerobot_checkpoints, observations):
    base, ft = lerobot_checkpoints(kind)
    serving = load(base, kind)
    obs = observations[1]
    base_out = serving.predict(obs).actions
    base_fp = fingerprint_tensors(dict(serving.named_parameters()))
    merger = ResidentMerger.from_checkpoints(base, [ft], groups=kind)
    outputs, prints = {}, {}
    for alpha in (0.0, 0.5, 1.0):
        merged = merger.merge(alpha)
        serving.load_merged(merged.tensors)
        for name, tensor in serving.named_parameters():
            torch.testing.assert_close(tensor, merged.tensors[name], atol=0, rtol=0)
        outputs[alpha], prints[alpha] = serving.predict(obs).actions, merged.fingerprint()
    assert prints[0.0] == base_fp  # merged at alpha 0 is bit for bit the base checkpoint
    np.testing.assert_array_equal(outputs[0.0], base_out)
    np.testing.assert_array_equal(outputs[1.0], load(ft, kind).predict(obs).actions)
    assert len(set(prints.values())) == 3
    assert not np.array_equal(outputs[0.5], outputs[0.0]) and not np.array_equal(outputs[0.5], outputs[1.0])


def test_a_bfloat16_pi0_swaps_merges_in_its_own_dtypes(lerobot_checkpoints, observations):
    base, ft = lerobot_checkpoints("pi0_bf16")
    serving = load(base, "pi0")
    dtypes = {name: t.dtype for name, t in serving.named_parameters()}
    assert set(dtypes.values()) == {torch.bfloat16, torch.float32}  # LeRobot keeps the vision tower in float32
    obs = observations[0]
    base_out = serving.predict(obs).actions
    merger = ResidentMerger.from_checkpoints(base, [ft], groups="pi0")
    serving.load_merged(merger.merge(0.0).tensors)
    np.testing.assert_array_equal(serving.predict(obs).actions, base_out)
    serving.load_merged(merger.merge(0.5).tensors)
    assert {name: t.dtype for name, t in serving.named_parameters()} == dtypes
    assert not np.array_equal(serving.predict(obs).actions, base_out)


def test_a_predict_during_load_merged_sees_the_old_or_the_new_weights_only(lerobot_checkpoints, observations):
    base, ft = lerobot_checkpoints("pi0")
    serving = load(base, "pi0")
    merger = ResidentMerger.from_checkpoints(base, [ft], groups="pi0")
    old, new = merger.merge(0.0), merger.merge(1.0)
    obs = observations[2]
    expected = {}
    for label, weights in (("old", old), ("new", new)):
        serving.load_merged(weights.tensors)
        expected[label] = serving.predict(obs).actions
    seen, stop = [], threading.Event()

    def predict_loop():
        while not stop.is_set():
            seen.append(serving.predict(obs).actions)

    worker = threading.Thread(target=predict_loop)
    worker.start()
    try:
        for i in range(30):
            serving.load_merged((new if i % 2 == 0 else old).tensors)
    finally:
        stop.set()
        worker.join()
    assert seen
    for actions in seen:
        assert np.array_equal(actions, expected["old"]) or np.array_equal(actions, expected["new"])


def test_weights_that_do_not_fit_are_refused_and_the_old_ones_keep_serving(lerobot_checkpoints, observations):
    base, ft = lerobot_checkpoints("smolvla")
    serving = load(base, "smolvla")
    before = serving.predict(observations[0]).actions
    good = dict(ResidentMerger.from_checkpoints(base, [ft], groups="smolvla").merge(0.5).tensors)
    name = next(iter(good))
    cases = {
        "missing": ({n: t for n, t in good.items() if n != name}, "1 tensor\\(s\\) missing"),
        "extra": ({**good, "model.surplus.weight": torch.zeros(2)}, "1 unexpected"),
        "shape": ({**good, name: torch.zeros(3, 1)}, f"'{name}' has shape \\[3, 1\\]"),
        "dtype": ({**good, name: good[name].to(torch.int32)}, f"'{name}' has dtype torch.int32"),
    }
    for tensors, message in cases.values():
        with pytest.raises(ConfigError, match=message):
            serving.load_merged(tensors)
    np.testing.assert_array_equal(serving.predict(observations[0]).actions, before)


def test_a_camera_mapped_to_an_image_the_policy_lacks_lists_its_images(lerobot_checkpoints):
    base = lerobot_checkpoints("smolvla")[0]
    with pytest.raises(ConfigError) as info:
        load_policy(base)  # the default DROID mapping names pi0's images
    message = str(info.value)
    assert "observation.images.base_0_rgb" in message and "lerobot_images" in message
    assert "observation.images.exterior_1_left" in message and "observation.images.wrist_left" in message


def test_a_state_of_the_wrong_length_is_refused(lerobot_checkpoints):
    io = LeRobotIO.from_params(["exterior=base_0_rgb"], ["joint_positions"], "joint_velocity", "closed_is_1")
    with pytest.raises(ConfigError, match="builds a state of 7 numbers but .* has 8"):
        load_policy(lerobot_checkpoints("pi0")[0], io_mapping=io)


def test_missing_processor_files_and_foreign_weights_are_named(lerobot_checkpoints, tmp_path):
    pi0, smolvla = lerobot_checkpoints("pi0")[0], lerobot_checkpoints("smolvla")[0]
    no_stats = shutil.copytree(pi0, tmp_path / "no_stats")
    (no_stats / "policy_postprocessor.json").unlink()
    with pytest.raises(ConfigError, match="has no policy_postprocessor.json"):
        load_policy(no_stats)
    foreign = shutil.copytree(pi0, tmp_path / "foreign")
    shutil.copy(smolvla / "model.safetensors", foreign / "model.safetensors")
    with pytest.raises(ConfigError, match="does not fit the PI0Policy"):
        load_policy(foreign)


def test_a_tokenizer_that_is_not_on_disk_is_named_with_the_fix(lerobot_checkpoints, tmp_path):
    offline = shutil.copytree(lerobot_checkpoints("pi0")[0], tmp_path / "offline")
    config = offline / "policy_preprocessor.json"
    steps = json.loads(config.read_text())
    for step in steps["steps"]:
        if "tokenizer_name" in step["config"]:
            step["config"]["tokenizer_name"] = "retain-ros-test/no-such-tokenizer"
    config.write_text(json.dumps(steps))
    with pytest.raises(ConfigError, match="retain-ros-test/no-such-tokenizer.*local directory or in the Hugging Face"):
        load_policy(offline)


def test_loading_works_with_the_hub_offline():
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # every checkpoint in these tests loaded without the hub


@pytest.mark.parametrize("kind", ["pi0", "smolvla"])
def test_the_nodes_model_manager_merges_and_swaps_a_lerobot_policy_live(kind, lerobot_checkpoints, observations):
    from retain_ros.merge.live import LiveMerger
    from retain_ros.serving.model_manager import MergeRequest, ModelManager

    base, ft = lerobot_checkpoints(kind)
    merger = ResidentMerger.from_checkpoints(base, [ft], groups=kind)
    recipes = LiveMerger.from_checkpoints(str(base), [str(ft)], groups=kind)
    manager = ModelManager(io_mapping=io_for(kind), content_hash=True)
    first = manager.load_initial(MergeRequest(str(base), (str(ft),), alpha=0.25, preset=kind))
    assert first.weights_id == recipes.recipe_id(recipes.resolve(0.25))
    manager.start()
    try:
        manager.request(MergeRequest(str(base), (str(ft),), alpha=0.75, preset=kind))

        def ready():
            assert not manager.last_error, manager.last_error
            return manager.take_swap()

        swapped = poll(ready, 120, 0.01)
        assert swapped is not None, "no swap within 120 s"
        content = poll(lambda: manager.content_sha256, 120, 0.01)
    finally:
        manager.stop()
    expected = merger.merge(0.75)
    assert swapped.weights_id == recipes.recipe_id(recipes.resolve(0.75)) != first.weights_id
    assert swapped.policy is first.policy and swapped.promote  # its standby module was merged into, then promoted
    reference = load(base, kind)
    reference.load_merged(expected.tensors)
    assert content == fingerprint_tensors(dict(reference.named_parameters()))  # bit for bit what the merge gives
    obs = observations[0]
    np.testing.assert_array_equal(swapped.policy.predict(obs).actions, reference.predict(obs).actions)
