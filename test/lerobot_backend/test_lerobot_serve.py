"""retain-serve with LeRobot pi0 / pi0.5 / SmolVLA checkpoints: DROID requests in, chunks out, a live alpha change.

The server runs in this process (PolicyServer on the real ModelManager) and is reached over loopback with the node's
own link (`remote.Link`). Runs in .venv-lerobot (`make test-lerobot`); skipped where LeRobot is not installed.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("lerobot", reason="LeRobot is not installed here; run these with `make test-lerobot` "
                    "(.venv-lerobot, Python >= 3.12)")

import numpy as np  # noqa: E402
from lerobot_helpers import io_for  # noqa: E402

from retain_ros.serving import openpi_wire as wire  # noqa: E402
from retain_ros.serving.model_manager import ModelManager  # noqa: E402
from retain_ros.serving.policy_server import PolicyServer  # noqa: E402
from retain_ros.serving.recipes import MergeRequest  # noqa: E402
from retain_ros.serving.remote import Link  # noqa: E402


@pytest.mark.parametrize("kind", ["pi0", "pi05", "smolvla"])
def test_retain_serve_answers_droid_requests_with_a_lerobot_merge_and_changes_alphas_live(lerobot_checkpoints, kind):
    base, ft = lerobot_checkpoints(kind)
    recipe = MergeRequest(str(base), (str(ft),), 0.5)
    manager = ModelManager(io_mapping=io_for(kind))
    manager.load_initial(recipe)
    server = PolicyServer(manager, recipe, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        link = Link(f"ws://127.0.0.1:{server.port}")
        info = link.metadata[wire.SERVER_KEY]
        assert info["camera_names"] == ["exterior", "wrist"] and {"vision", "language", "action"} <= set(info["groups"])
        rng = np.random.default_rng(0)
        request = {wire.EXTERIOR_IMAGE: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                   wire.WRIST_IMAGE: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                   wire.JOINT_POSITION: rng.uniform(-1, 1, 7), wire.GRIPPER_POSITION: np.array([0.2]),
                   wire.PROMPT: "pick up the cube"}
        first = link.call(request, 120)
        assert first["actions"].shape[1] == 8 and np.isfinite(first["actions"]).all()
        assert first["retain"]["weights_id"] == info["weights_id"]
        control = Link(f"ws://127.0.0.1:{server.port}")
        ack = control.call({wire.SET_ALPHAS: {"alpha": 1.0, "group_alpha": {"language": 0.0}}}, 300)[wire.ACK]
        assert ack["weights_alphas"]["language"] == [0.0] and ack["weights_alphas"]["vision"] == [1.0]
        second = link.call(request, 120)
        assert second["retain"]["weights_id"] == ack["weights_id"] != info["weights_id"]
        assert np.isfinite(second["actions"]).all()
        link.close()
        control.close()
    finally:
        server.shutdown()
        thread.join(10)
