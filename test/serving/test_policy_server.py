"""retain-serve's server and the node's client link, in one process over real websockets on loopback.

The server runs the real ModelManager on tiny reference-VLA checkpoints; the client side is `remote.Link` /
`RemoteModelManager`, the node's backend, and a plain websockets connection for what a foreign client may send.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from retain_ros.errors import ConfigError
from retain_ros.merge.live import LiveMerger
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.interface import DROID_ACTION_SPACE, Observation, load_policy
from retain_ros.policy.processor_reference import NormalizationStats
from retain_ros.policy.reference_policy import random_policy
from retain_ros.serving import openpi_wire as wire
from retain_ros.serving.model_manager import ModelManager
from retain_ros.serving.policy_server import PolicyServer
from retain_ros.serving.recipes import MergeRequest
from retain_ros.serving.remote import Link, RemoteModelManager

PROMPT = "push the red cube onto the purple plate"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    config = ReferenceVLAConfig.tiny(horizon=6)
    stats = NormalizationStats(np.zeros(8), np.ones(8), np.zeros(8), np.full(8, 0.3))
    base = random_policy(config, seed=1, stats=stats).save_pretrained(root / "base")
    ft = random_policy(config, seed=2, stats=stats).save_pretrained(root / "ft")
    return str(base), str(ft)


@pytest.fixture
def server(pair):
    base, ft = pair
    recipe = MergeRequest(base, (ft,), 0.5)
    manager = ModelManager()
    manager.load_initial(recipe)
    srv = PolicyServer(manager, recipe, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(10)


def request(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {wire.EXTERIOR_IMAGE: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            wire.WRIST_IMAGE: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            wire.JOINT_POSITION: rng.uniform(-1, 1, 7), wire.GRIPPER_POSITION: np.array([0.3]), wire.PROMPT: PROMPT}


def expected_chunk(pair, alpha: float, req: dict) -> tuple[str, np.ndarray]:
    """The weights identity and the chunk of the merge at `alpha`, computed here."""
    base, ft = pair
    policy = load_policy(base)
    merged = ResidentMerger.from_checkpoints(base, [ft]).merge(alpha)
    policy.load_merged(merged.tensors)
    obs = wire.observation_from_request(req, policy.spec.camera_names)
    return LiveMerger.from_checkpoints(base, [ft]).recipe_id(merged.alphas), policy.predict(obs).actions


def uri(srv: PolicyServer) -> str:
    return f"ws://127.0.0.1:{srv.port}"


def test_wire_frames_round_trip_and_refuse_what_cannot_travel():
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(3), np.bool_(True)], "c": "text",
            "d": {"e": np.zeros((0, 8))}}
    back = wire.unpack(wire.pack(data))
    np.testing.assert_array_equal(back["a"], data["a"])
    assert back["a"].dtype == np.float32 and back["b"][0].dtype == np.int64 and back["d"]["e"].shape == (0, 8)
    assert back["c"] == "text" and back["b"][1] == np.True_
    with pytest.raises(TypeError, match="dtype object"):
        wire.pack({"x": np.array([object()])})
    with pytest.raises(ConfigError, match="unreadable frame"):
        wire.unpack(b"\xc1")


def test_a_droid_request_carries_the_observation_as_openpis_client_sends_it():
    obs = Observation({"exterior": np.full((48, 64, 3), 200, np.uint8), "wrist": np.zeros((64, 64, 3), np.uint8)},
                      np.arange(7) * 0.1, 0.25, PROMPT, 7)
    req = wire.unpack(wire.pack(wire.droid_request(obs)))
    assert req[wire.EXTERIOR_IMAGE].shape == (224, 224, 3) and req[wire.EXTERIOR_IMAGE].dtype == np.uint8
    assert req[wire.EXTERIOR_IMAGE][0, 0].tolist() == [0, 0, 0]  # padded top row (48x64 -> 168x224 centred)
    assert req[wire.EXTERIOR_IMAGE][112, 112].tolist() == [200, 200, 200]
    back = wire.observation_from_request(req, ("exterior", "wrist"), 7)
    np.testing.assert_allclose(back.joint_positions, obs.joint_positions)
    assert back.gripper_position == 0.25 and back.instruction == PROMPT
    # float CHW images in [0, 1], as a LeRobot dataset stores them, are accepted (openpi's DroidInputs does too)
    req[wire.WRIST_IMAGE] = np.ones((3, 224, 224), np.float32)
    assert wire.observation_from_request(req, ("wrist",)).images["wrist"].shape == (224, 224, 3)
    with pytest.raises(ConfigError, match="lacks"):
        wire.observation_from_request({wire.PROMPT: "x"}, ("exterior",))


@pytest.mark.parametrize("answer, words", [
    ({"actions": np.full((4, 8), np.nan)}, "NaN"), ({"actions": np.zeros((4, 5))}, "shape (4, 5)"),
    ({"actions": "go"}, "not an array"), ({"action": np.zeros((4, 8))}, "no 'actions'"),
    ("Traceback ...\nValueError: bad prompt", "server failed: ValueError: bad prompt")])
def test_malformed_answers_are_refused_with_the_reason(answer, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        wire.chunk_from_answer(answer, DROID_ACTION_SPACE, 1 / 15, 0)


def test_answers_come_from_the_merge_and_a_new_alpha_serves_from_the_next_request(server, pair):
    link = Link(uri(server))
    info = link.metadata[wire.SERVER_KEY]
    assert info["camera_names"] == ["exterior", "wrist"] and info["horizon"] == 6 and info["alphas"] == "0.5"
    req = request()
    half_id, half = expected_chunk(pair, 0.5, req)
    answer = link.call(req, 30)
    assert answer["actions"].shape == (6, 8) and answer["retain"]["weights_id"] == half_id == info["weights_id"]
    np.testing.assert_allclose(answer["actions"], half, atol=1e-5)

    control = Link(uri(server))  # the node changes alphas on a connection of its own
    ack = control.call({wire.SET_ALPHAS: {"alpha": [0.75]}}, 60)[wire.ACK]
    three_q_id, three_q = expected_chunk(pair, 0.75, req)
    assert ack["alphas"] == "0.75" and ack["weights_id"] == three_q_id
    answer = link.call(req, 30)  # the first request after the acknowledgement: the new merge
    assert answer["retain"]["weights_id"] == three_q_id and answer["retain"]["generation"] == 2
    np.testing.assert_allclose(answer["actions"], three_q, atol=1e-5)

    # refused alphas keep the serving merge and the connection
    for spec, words in (({"alpha": 1.5}, "in [0, 1]"), ({"alpha": 0.5, "group_alpha": {"visual": 1}}, "unknown group"),
                        ({"alfa": 0.5}, "takes"), ({"alpha": "high"}, "numbers")):
        assert words in control.call({wire.SET_ALPHAS: spec}, 30)[wire.ERROR]
    assert link.call(req, 30)["retain"]["weights_id"] == three_q_id
    link.close()
    control.close()


def test_a_bad_request_gets_openpis_error_frame_and_the_server_goes_on(server):
    with connect(uri(server), compression=None, max_size=None) as conn:
        conn.recv()  # metadata
        conn.send(wire.pack({wire.PROMPT: "no images"}))
        error = conn.recv()
        assert isinstance(error, str) and "lacks" in error
        with pytest.raises(Exception):
            conn.recv(timeout=5)
        assert conn.close_code == 1011
    link = Link(uri(server))
    assert link.call(request(), 30)["actions"].shape == (6, 8)
    link.close()


def test_the_remote_manager_forwards_alphas_and_holds_while_the_server_is_gone(server, pair):
    remote = RemoteModelManager(uri(server), timeout_s=30)
    model = remote.load_initial(MergeRequest("", alpha=0.75))
    assert model.weights_id == expected_chunk(pair, 0.5, request())[0]  # what the server served when we came
    assert "being asked for alphas 0.75" in remote.holding  # nothing commanded before the node's alphas serve
    remote.start()
    try:
        deadline = time.monotonic() + 60
        while remote.holding and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote.holding == ""
        swapped = remote.take_swap()
        three_q_id, three_q = expected_chunk(pair, 0.75, request())
        assert swapped.weights_id == three_q_id and swapped.request.describe() == "0.75"
        assert remote.groups == ("vision", "language", "action")
        # another client changes the server's alphas: the next chunk reports the weights that computed it
        control = Link(uri(server))
        other_id = control.call({wire.SET_ALPHAS: {"alpha": 0.25}}, 60)[wire.ACK]["weights_id"]
        obs = wire.observation_from_request(request(), ("exterior", "wrist"))
        remote.policy.predict(obs)
        attributed = remote.computed_by(swapped)
        assert attributed.weights_id == other_id and attributed.request.describe() == "0.25"
        assert "did not ask for" in remote.last_event
        control.close()
        # the server goes away: the manager says so without any request in flight
        server.shutdown()
        deadline = time.monotonic() + 10
        while not remote.holding and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "reconnecting" in remote.holding and not remote.server_status()["connected"]
        with pytest.raises(ConfigError, match="no connection"):
            remote.policy.predict(obs)
    finally:
        remote.close()


def test_retain_serve_draws_k_samples_in_one_request_as_the_local_policy_does(server, pair):
    remote = RemoteModelManager(uri(server), timeout_s=30)
    remote.load_initial(MergeRequest("", alpha=0.5))
    try:
        assert remote.policy.can_sample
        obs = wire.observation_from_request(request(), ("exterior", "wrist"))
        chunks = remote.policy.sample_chunks(obs, 5, noise_scale=1.0, seed=7)
        local = load_policy(pair[0])
        local.load_merged(ResidentMerger.from_checkpoints(pair[0], [pair[1]]).merge(0.5).tensors)
        expected = local.sample_chunks(obs, 5, noise_scale=1.0, seed=7)
        assert len(chunks) == 5
        for got, want in zip(chunks, expected):
            np.testing.assert_allclose(got.actions, want.actions, atol=1e-5)
        with connect(uri(server)) as raw:  # a malformed sample request: openpi's error frame, with the reason
            raw.recv()
            raw.send(wire.pack({**request(), wire.SAMPLES: {"k": 0}}))
            assert "k=0 must be in [1, 64]" in raw.recv()
    finally:
        remote.close()


def test_an_unreachable_server_is_named_and_a_bad_uri_refused():
    with pytest.raises(ConfigError, match="connection refused"):
        Link("ws://127.0.0.1:9", open_timeout_s=2)
    with pytest.raises(ConfigError, match="must start with ws://"):
        RemoteModelManager("http://gpu-host:8000")
    remote = RemoteModelManager("ws://127.0.0.1:9")
    remote.load_initial(MergeRequest("", alpha=0.5))
    assert "connection refused" in remote.holding
    remote.close()


@pytest.fixture
def misbehaving():
    """An openpi-style server that answers late (prompt 'slow') or with a malformed chunk (prompt 'nan')."""
    from websockets.sync.server import serve

    def handle(conn):
        conn.send(wire.pack({}))  # a plain openpi server's metadata
        for frame in conn:
            req = wire.unpack(frame)
            if req[wire.PROMPT] == "slow":
                time.sleep(1.0)
            actions = np.full((4, 8), np.nan) if req[wire.PROMPT] == "nan" else np.zeros((4, 8))
            conn.send(wire.pack({"actions": actions}))

    srv = serve(handle, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"ws://127.0.0.1:{srv.socket.getsockname()[1]}"
    srv.shutdown()


def test_a_late_or_malformed_answer_is_refused_and_a_late_one_drops_the_link(misbehaving):
    remote = RemoteModelManager(misbehaving, timeout_s=0.3)
    model = remote.load_initial(MergeRequest("", alpha=0.5))
    assert remote.holding == "" and model.weights_id == ""  # an openpi server: its own model, nothing to ask
    assert remote.server_status()["retain_serve"] is False
    obs = wire.observation_from_request(request(), ("exterior", "wrist"))
    assert remote.policy.predict(obs).actions.shape == (4, 8)
    assert not remote.policy.can_sample  # a plain openpi server draws one chunk per request
    with pytest.raises(ConfigError, match="steering needs retain-serve"):
        remote.policy.sample_chunks(obs, 4)
    obs.instruction = "nan"
    with pytest.raises(ConfigError, match="NaN"):
        remote.policy.predict(obs)
    assert remote.holding == ""  # the connection is fine; only that answer was refused
    obs.instruction = "slow"
    with pytest.raises(ConfigError, match="did not answer within 0.3 s"):
        remote.policy.predict(obs)
    assert "did not answer within 0.3 s" in remote.holding  # closed: its late answer is never read as the next one
    remote.request(MergeRequest("", alpha=0.9))  # alphas cannot change on a plain openpi server
    remote.start()
    try:
        deadline = time.monotonic() + 10
        while not (remote.last_error and remote.holding == "") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "not retain-serve" in remote.last_error and remote.counts["reconnects"] == 1
        obs.instruction = PROMPT
        assert remote.policy.predict(obs).actions.shape == (4, 8)  # reconnected by the worker
    finally:
        remote.close()
