"""openpi's own client (openpi-client's WebsocketClientPolicy) against retain-serve in another process.

Runs in .venv-openpi (`make test-openpi`), where openpi-client is installed; elsewhere it skips itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
from openpi_client import image_tools, msgpack_numpy  # noqa: E402

from retain_ros.policy.configuration_reference import ReferenceVLAConfig  # noqa: E402
from retain_ros.policy.processor_reference import NormalizationStats  # noqa: E402
from retain_ros.policy.reference_policy import random_policy  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """retain-serve on a tiny base + finetuned pair at alpha 0.5, on a free port."""
    root = tmp_path_factory.mktemp("ckpt")
    config = ReferenceVLAConfig.tiny(horizon=6)
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.3))
    random_policy(config, seed=1, stats=stats).save_pretrained(root / "base")
    random_policy(config, seed=2, stats=stats).save_pretrained(root / "ft")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "retain_ros.serving.serve_cli", "--checkpoint-root", str(root),
                             "--base", "base", "--finetuned", "ft", "--alpha", "0.5", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "listening on" not in (root / "server.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
        time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(20)
    log.close()


def droid_observation(seed: int = 0) -> dict:
    """What openpi's DROID client sends: camera frames resized with padding to 224 by openpi's own image_tools."""
    rng = np.random.default_rng(seed)
    return {"observation/exterior_image_1_left": image_tools.resize_with_pad(
                rng.integers(0, 256, (180, 320, 3), dtype=np.uint8), 224, 224),
            "observation/wrist_image_left": image_tools.resize_with_pad(
                rng.integers(0, 256, (180, 320, 3), dtype=np.uint8), 224, 224),
            "observation/joint_position": rng.uniform(-1, 1, 7), "observation/gripper_position": np.array([0.0]),
            "prompt": "push the red cube onto the purple plate"}


def test_openpis_client_gets_droid_chunks_and_sees_a_live_alpha_change(server):
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server)
    info = client.get_server_metadata()["retain_serve"]
    assert info["camera_names"] == ["exterior", "wrist"] and info["alphas"] == "0.5"
    obs = droid_observation()
    answer = client.infer(obs)
    assert answer["actions"].shape == (6, 8) and np.all(np.isfinite(answer["actions"]))
    assert answer["server_timing"]["infer_ms"] > 0 and answer["retain"]["weights_id"] == info["weights_id"]
    first = answer["actions"]
    np.testing.assert_array_equal(client.infer(obs)["actions"], first)  # deterministic for one observation

    # the node's control frame, packed by openpi-client's own packer on a second connection
    import websockets.sync.client

    with websockets.sync.client.connect(f"ws://127.0.0.1:{server}", compression=None, max_size=None) as conn:
        msgpack_numpy.unpackb(conn.recv())
        conn.send(msgpack_numpy.Packer().pack({"retain/alphas": {"alpha": [0.9]}}))
        ack = msgpack_numpy.unpackb(conn.recv())["retain/ack"]
    assert ack["alphas"] == "0.9"
    answer = client.infer(obs)  # the next request of the openpi client: the new merge
    assert answer["retain"]["weights_id"] == ack["weights_id"] != info["weights_id"]
    assert not np.allclose(answer["actions"], first)


def test_a_request_missing_droid_keys_raises_in_openpis_client(server):
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server)
    obs = droid_observation()
    del obs["observation/wrist_image_left"]
    with pytest.raises(RuntimeError, match="observation/wrist_image_left"):
        client.infer(obs)
