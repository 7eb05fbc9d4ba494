"""`retain-serve`'s server: the live-merge engine behind openpi's websocket policy protocol (`openpi_wire`).

One `ModelManager` holds the policy (reference VLA or LeRobot pi0 / pi0.5 / SmolVLA) and merges alpha changes into
its standby copy off the serving path, exactly as in the node; every request first takes a ready swap, so a new merge
serves from the next request on and each answer names the merge that computed it (`retain` entry). Connections are
served on threads of their own (websockets' sync server); inference is serialised, since one model serves them all.

A request the server cannot answer (a malformed observation, a policy error) gets openpi's answer: the error as a
text frame, then the connection closes with code 1011. Control frames (`retain/alphas`) are answered on the same
connection and never close it.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from retain_ros.errors import ConfigError
from retain_ros.merge.maths import AlphaSpec
from retain_ros.policy.interface import can_sample
from retain_ros.serving import openpi_wire as wire
from retain_ros.serving.model_manager import ModelManager, ServingModel
from retain_ros.serving.recipes import MergeRequest

log = logging.getLogger(__name__)
INTERNAL_ERROR = 1011  # websocket close code openpi's server sends after an error frame
GOING_AWAY = 1001


class PolicyServer:
    """Serves a ModelManager's model to openpi clients and to the node's `openpi_server` backend.

    Args:
        manager: the live-merge engine, its first model loaded (`load_initial`); the server starts its worker.
        recipe: the request the first model was built for; alpha changes replace its alphas.
        host: address to listen on ('0.0.0.0': every interface, as openpi's serve_policy).
        port: TCP port (0: any free port; `port` tells which).
    """

    def __init__(self, manager: ModelManager, recipe: MergeRequest, host: str = "0.0.0.0", port: int = 8000) -> None:
        self.manager = manager
        self.recipe = recipe
        self._infer_lock = threading.Lock()
        self._connections: set[ServerConnection] = set()  # closed by `shutdown` (websockets < 17 leaves them open)
        self._connections_lock = threading.Lock()
        self._server: Server = serve(self._handle, host, port, compression=None, max_size=None)
        self.host, self.port = self._server.socket.getsockname()[:2]
        self.requests = 0
        self.merge_timeout_s = 600.0  # how long a control frame waits for its merge (a large model, streamed)
        manager.start()

    # ------------------------------------------------------------------------------------------------ lifecycle
    def serve_forever(self) -> None:
        """Serve until `shutdown` (another thread, or Ctrl-C in the caller)."""
        self._server.serve_forever()

    def shutdown(self) -> None:
        """Stop accepting, close the connections (clients see the server go away) and stop the merge worker."""
        self._server.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close(GOING_AWAY, "retain-serve is shutting down")
        self.manager.close()

    def metadata(self) -> dict:
        """The first frame of every connection: openpi's metadata, with retain-serve's own entry."""
        model = self.manager.serving
        spec = model.policy.spec
        return {wire.SERVER_KEY: {
            "version": wire.PROTOCOL_VERSION, "camera_names": list(spec.camera_names), "horizon": spec.horizon,
            "dt_s": spec.dt_s, "action_space": spec.action_space.to_dict(),
            "execution_mode": getattr(model.policy, "execution_mode", "chunk"), "base": self.recipe.base,
            "can_sample": can_sample(model.policy),
            "finetuned": list(self.recipe.finetuned), "groups": list(self.manager.groups), **identity(model)}}

    # ------------------------------------------------------------------------------------------------ requests
    def _handle(self, conn: ServerConnection) -> None:
        peer = conn.remote_address
        log.info("connection from %s", peer)
        with self._connections_lock:
            self._connections.add(conn)
        try:
            conn.send(wire.pack(self.metadata()))
            for frame in conn:
                if isinstance(frame, str):
                    raise ConfigError("text frames carry no request; send msgpack (openpi-client's packer)")
                request = wire.unpack(frame)
                if isinstance(request, Mapping) and wire.SET_ALPHAS in request:
                    conn.send(wire.pack(self.set_alphas(request[wire.SET_ALPHAS])))
                else:
                    conn.send(wire.pack(self.infer(request)))
        except ConnectionClosed:
            log.info("connection from %s closed", peer)
        except Exception as exc:  # noqa: BLE001  (openpi's answer to any failure: the error, then close)
            log.warning("request from %s failed: %s", peer, exc)
            detail = str(exc) if isinstance(exc, ConfigError) else traceback.format_exc()
            try:
                conn.send(detail)
                conn.close(INTERNAL_ERROR, "request failed; the error is in the previous frame")
            except ConnectionClosed:
                pass
        finally:
            with self._connections_lock:
                self._connections.discard(conn)

    def infer(self, request: object) -> dict:
        """Answer one DROID request with the serving model (a ready merge is swapped in first).

        Raises:
            ConfigError: a malformed request (the client gets the message).
        """
        started = time.perf_counter()
        with self._infer_lock:
            model = self.manager.serving
            obs = wire.observation_from_request(request, model.policy.spec.camera_names)
            samples = sample_request(request.get(wire.SAMPLES), model.policy)
            while True:
                self.manager.take_swap()
                model = self.manager.serving
                with self.manager.weights_lock:
                    if not self.manager.holding:  # an in-place merge is not half-written, nor waiting to be taken
                        chunks = (model.policy.sample_chunks(obs, **samples) if samples else
                                  [model.policy.predict(obs)])
                        break
                time.sleep(0.001)
            self.requests += 1
        infer_ms = 1e3 * (time.perf_counter() - started)
        answer = {wire.ACTIONS: np.asarray(chunks[0].actions), wire.ANSWER_KEY: identity(model),
                  "server_timing": {"infer_ms": infer_ms}}
        if samples:
            answer[wire.CANDIDATES] = np.stack([c.actions for c in chunks])
        return answer

    def set_alphas(self, spec: object) -> dict:
        """A control frame: merge the serving checkpoints at new alphas; answered once the merge is ready.

        The merge runs on the manager's worker into the standby copy while other connections are answered; the next
        request after the acknowledgement is computed by it (unless another client asked for other alphas since).

        Returns the acknowledgement ({'retain/ack': the request's alphas and the ready merge's identity}) or
        {'retain/error': why}.
        """
        try:
            request = self.request_for(spec)
            request_id = self.manager.request(request)
            log.info("alphas %s asked for (request %d)", request.describe(), request_id)
            model = self.manager.wait_for(request_id, self.merge_timeout_s)
        except ConfigError as exc:
            return {wire.ERROR: str(exc)}
        return {wire.ACK: {"alphas": request.describe(), **identity(model)}}

    def request_for(self, spec: object) -> MergeRequest:
        """The merge request of a control frame's alphas, checked against the served checkpoints.

        Raises:
            ConfigError: not a map of alpha / group_alpha, or alphas the merge would refuse.
        """
        if not isinstance(spec, Mapping) or not set(spec) <= {"alpha", "group_alpha"}:
            raise ConfigError(f"{wire.SET_ALPHAS} takes {{'alpha': A or [A, ...], 'group_alpha': {{GROUP: A}}}}, "
                              f"got {spec!r}")
        if not self.recipe.finetuned:
            raise ConfigError("this server serves the base alone (no --finetuned): there is no alpha to change")

        def values(v: object) -> float | tuple[float, ...]:
            return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)

        try:
            alpha = values(spec.get("alpha", self.recipe.alpha))
            group_alpha = {str(g): values(v) for g, v in dict(spec.get("group_alpha", {})).items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{wire.SET_ALPHAS}: alphas must be numbers ({exc})") from None
        request = replace(self.recipe, alpha=alpha, group_alpha=group_alpha)
        AlphaSpec.uniform(alpha, **group_alpha).resolve(self.manager.groups, len(self.recipe.finetuned))
        return request


def sample_request(value: object, policy: object) -> dict | None:
    """The `sample_chunks` arguments of a request's `retain/samples` entry (None: a plain request).

    Raises:
        ConfigError: a malformed entry, or a served policy that cannot sample (the client gets the message).
    """
    if value is None:
        return None
    if not can_sample(policy):
        raise ConfigError(f"{wire.SAMPLES}: the served policy ({type(policy).__name__}) cannot draw several chunks")
    try:
        k, scale, seed = int(value["k"]), value.get("noise_scale"), value.get("seed")
        scale = None if scale is None else float(scale)
        seed = None if seed is None else int(seed)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise ConfigError(f"{wire.SAMPLES} must be {{'k': K, 'noise_scale': S or None, 'seed': N or None}}, got "
                          f"{value!r}") from None
    if not 1 <= k <= 64:
        raise ConfigError(f"{wire.SAMPLES}: k={k} must be in [1, 64]")
    return {"k": k, "noise_scale": scale, "seed": seed}


def identity(model: ServingModel) -> dict:
    """What an answer says about the merge that computed it."""
    return {"weights_id": model.weights_id, "request_id": model.request_id, "generation": model.generation,
            "alphas": model.request.describe() if model.request.finetuned else "", "weights_alphas":
            {g: list(v) for g, v in model.alphas.items()}}
