"""The two-machine layout on one machine: the node (`policy_backend: openpi_server`) and retain-serve, each a process.

Real websockets on loopback, the real server (ModelManager on tiny checkpoints) and the real node. The inputs are
constant (FakeRobot), so a chunk is a function of the served weights alone: the test recomputes the chunk of each
alpha in its own process, from the observation exactly as it travels (DROID request, 224x224 images), and checks every
published chunk against the merge its weights identity names.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from fake_robot import FakeRobot
from ros_helpers import latest_status, wait_until
from test_live_merge_node import Expected, serving
from test_policy_node import STATUS, T, check_trajectory, count, start_policy

from retain_ros.control import messages
from retain_ros.fr3 import FR3_Q_MAX, FR3_Q_MIN
from retain_ros.serving import openpi_wire as wire
from retain_ros.topics import FR3_ARM_JOINTS

NODE = "retain_policy"
CHUNKS = "/retain_policy/action_chunk"
SERVER = "retain_ros.serving.serve_cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ros, tiny_checkpoints, port: int, alpha: float, name: str):
    _, _, _, spawn = ros
    root, base, finetuned = tiny_checkpoints
    proc = spawn(SERVER, ["--checkpoint-root", str(root), "--base", "base", "--finetuned", finetuned[0].name,
                          "--alpha", str(alpha), "--host", "127.0.0.1", "--port", str(port), "-v"], name)
    wait_until(lambda: "listening on" in proc.output(), 60, "retain-serve listening", proc)
    return proc


class Proxy:
    """A TCP relay the test can cut at a known instant (both directions closed at once), then restore."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (a plain close would not)
        except OSError:
            pass
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._sockets = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server is down: so is this connection
                client.close()
                continue
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def check_command(msg) -> None:
    """A streamed step (one point, positions only) or a trajectory with velocities (the stop): finite, in limits."""
    times, positions, velocities = messages.trajectory_arrays(msg, FR3_ARM_JOINTS)
    if velocities is not None:
        check_trajectory(msg)
        return
    assert len(times) == 1 and times[0] > 0 and np.all(np.isfinite(positions))
    assert np.all(positions >= np.array(FR3_Q_MIN)) and np.all(positions <= np.array(FR3_Q_MAX))


@pytest.mark.slow
def test_the_node_drives_the_arm_from_retain_serve_changes_alphas_there_and_stops_when_it_dies(
        ros, tiny_checkpoints):
    _, _, observer, _ = ros
    root, base, finetuned = tiny_checkpoints
    expected = Expected(base, finetuned)
    expected.obs = wire.observation_from_request(wire.droid_request(expected.obs), ("exterior", "wrist"))
    port = free_port()
    server = start_server(ros, tiny_checkpoints, port, 0.5, "server")
    link = Proxy(port)  # the network between the robot PC and the GPU host
    fp_75 = expected.add(0.75)
    node = start_policy(ros, tiny_checkpoints, policy_backend="openpi_server",
                        policy_server_uri=f"ws://127.0.0.1:{link.port}",
                        policy_server_timeout_s=10.0, alpha=0.75, execution_mode="stream")
    FakeRobot(observer.node)
    # the node's alpha (0.75), not the server's start-up one (0.5), is what commands the arm
    status = wait_until(serving(observer, fp_75), 60, "serving the node's alpha 0.75 from the server", node)
    assert status["execution_mode"] == "stream"  # as openpi's DROID client executes DROID actions
    assert status["policy_server"]["connected"] and status["policy_server"]["retain_serve"]
    assert status["policy_server"]["finetuned"] == [str(finetuned[0])]
    wait_until(lambda: count(observer) >= 5, 30, "5 commands", node)

    # a live alpha change goes to the server, which merges into its standby copy and swaps between two requests
    fp_25 = expected.add(0.25)
    assert observer.set_parameters(NODE, {"alpha": 0.25})[0].successful
    wait_until(serving(observer, fp_25), 60, "serving alpha 0.25", node)
    wait_until(lambda: any(c.weights_id == fp_25 for c in observer.received(CHUNKS)), 30, "a 0.25 chunk", node)
    refused = observer.set_parameters(NODE, {"base_checkpoint": str(base)})[0]
    assert not refused.successful and "the server's" in refused.reason
    for chunk in observer.received(CHUNKS):
        expected.check(chunk)
    assert {c.weights_id for c in observer.received(CHUNKS)} == {fp_75, fp_25}

    # the link drops just after a chunk came: the running chunk's steps stop at the next tick, with a stop command
    chunks = len(observer.received(CHUNKS))
    wait_until(lambda: len(observer.received(CHUNKS)) > chunks, 30, "a fresh chunk", node)
    link.cut()
    cut_at = count(observer)
    held = wait_until(lambda: (s := latest_status(observer)) and s["state"] == "holding" and s, 30, "holding", node)
    assert "reconnecting" in held["reason"] and not held["policy_server"]["connected"]
    n_status = len(observer.received(STATUS))
    wait_until(lambda: len(observer.received(STATUS)) >= n_status + 2, 30, "status while the link is down", node)
    # a step already on its way (or still in transit to the observer), and the stop; the chunk's remaining steps
    # (up to 5 of 6) are not sent
    assert len(observer.received(T.arm_command)) - cut_at <= 3
    link.restore()
    wait_until(lambda: count(observer) >= cut_at + 5, 60, "commands after the link came back", node)

    # the server dies; it comes back with its own start-up alpha: the node reconnects, asks for its alphas again
    server.proc.kill()
    wait_until(lambda: (s := latest_status(observer)) and s["state"] == "holding", 30, "holding", node)
    # the server comes back (with its own start-up alpha): the node reconnects, asks for its alphas, commands again
    before = count(observer)
    start_server(ros, tiny_checkpoints, port, 0.5, "server2")
    wait_until(serving(observer, fp_25), 60, "serving alpha 0.25 again after the reconnection", node)
    wait_until(lambda: count(observer) >= before + 3, 30, "commands after the reconnection", node)
    assert latest_status(observer)["merge_reconnects"] >= 1
    for chunk in observer.received(CHUNKS):
        expected.check(chunk)
    for msg in observer.received(T.arm_command):
        check_command(msg)


@pytest.mark.slow
def test_steering_draws_its_samples_from_retain_serve_in_one_request(ros, tiny_checkpoints):
    from retain_ros.policy.interface import load_policy
    from retain_ros.steering.synthetic import first_joint_value

    _, _, observer, _ = ros
    root, base, finetuned = tiny_checkpoints
    expected = Expected(base, finetuned)
    expected.obs = wire.observation_from_request(wire.droid_request(expected.obs), ("exterior", "wrist"))
    own = expected.by_id[expected.add(0.5)]  # the served policy's own chunk, sample 0 of every request
    value = first_joint_value(load_policy(base).spec).save_pretrained(root / "value_remote")  # Q = a[0, 0]
    port = free_port()
    start_server(ros, tiny_checkpoints, port, 0.5, "server")
    node = start_policy(ros, tiny_checkpoints, policy_backend="openpi_server",
                        policy_server_uri=f"ws://127.0.0.1:{port}", policy_server_timeout_s=10.0, alpha=0.5,
                        execution_mode="chunk", execute_steps=2, steering="value", steering_samples=6,
                        steering_checkpoint=str(value))
    FakeRobot(observer.node)
    wait_until(lambda: sum(c.steering == "value" for c in observer.received(CHUNKS)) >= 8, 60, "steered chunks", node)
    status = latest_status(observer)
    assert status["steering"]["mode"] == "value" and status["steering"]["samples"] == 6
    for chunk in observer.received(CHUNKS):
        actions, _ = messages.action_chunk_arrays(chunk)
        assert chunk.steering == "value" and chunk.steering_samples == 6
        assert chunk.steering_value == pytest.approx(float(actions[0, 0]), abs=1e-5)
        assert chunk.steering_value >= own[0, 0] - 1e-5
    for msg in observer.received(T.arm_command):
        check_command(msg)
