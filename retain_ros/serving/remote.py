"""The node's `openpi_server` backend: the model runs on a policy server (retain-serve or openpi's serve_policy).

`RemotePolicy` sends each observation as openpi's DROID request and returns the answer as an ActionChunk, checked
(shape, finite numbers) and clipped, within a deadline. `RemoteModelManager` stands where the node's `ModelManager`
stands (the control loop and the status read the same things), with a worker thread that
- reconnects by itself: while there is no connection the arm is held (`holding`: the control loop sends the stop and
  commands nothing), and a dropped connection is noticed at the next control tick, inference or not;
- forwards alpha changes to retain-serve on a connection of its own (`retain/alphas`); the server merges into its
  standby copy and acknowledges once the merge is ready, which is when the node swaps its own record of what serves.
  After a reconnection the node's alphas are asked for again before anything is commanded.
Every answer of retain-serve names the merge that computed it (`computed_by`), so each published chunk reports its
weights exactly, even when another client changed the server's alphas. A plain openpi server serves its own model:
alpha changes are refused with a reason in the status.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import numpy as np
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import (DROID_ACTION_SPACE, DROID_DT_S, DROID_JOINT_VELOCITY, ActionChunk,
                                         ActionSpace, Observation, PolicySpec, validate_observation)
from retain_ros.serving import openpi_wire as wire
from retain_ros.serving.model_manager import ServingModel
from retain_ros.serving.recipes import MergeRequest
from retain_ros.worker_thread import WorkerThread

log = logging.getLogger(__name__)
RETRY_S = 0.5  # between two connection attempts
OPEN_TIMEOUT_S = 2.0  # a connection attempt (TCP + websocket handshake + metadata)
MERGE_TIMEOUT_S = 600.0  # how long the node waits for retain-serve to acknowledge an alpha change
DROID_SPEC = PolicySpec(camera_names=tuple(wire.DROID_CAMERAS), image_size=(wire.DROID_IMAGE_SIZE,) * 2)


class Link:
    """One websocket connection to a policy server: one request, one answer, under a lock, with a deadline.

    Raises (open, call):
        ConfigError: the server is unreachable, closed the connection, missed the deadline or failed; the
            connection is then closed (an answer that comes late must never be read as the next one's).
    """

    def __init__(self, uri: str, open_timeout_s: float = OPEN_TIMEOUT_S) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._problem = ""
        try:
            self._conn: ClientConnection = connect(uri, compression=None, max_size=None, open_timeout=open_timeout_s,
                                                   ping_interval=None, close_timeout=1.0)
            if hasattr(self._conn, "pending_legacy_warning"):  # websockets 17: this connection is meant to persist
                self._conn.pending_legacy_warning = False
            self.metadata = wire.unpack(self._conn.recv(timeout=open_timeout_s))
        except (OSError, TimeoutError, WebSocketException, ConfigError) as exc:
            self.close()
            raise ConfigError(f"cannot reach the policy server at {uri}: {_why(exc)}") from None
        if not isinstance(self.metadata, dict):
            self.close()
            raise ConfigError(f"the policy server at {uri} sent {type(self.metadata).__name__} metadata, not a map: "
                              "is it an openpi policy server?")

    @property
    def alive(self) -> bool:
        """Whether the connection is open (a server that went away shows at once: the socket's reader sees it)."""
        conn = getattr(self, "_conn", None)
        return conn is not None and conn.protocol.state is State.OPEN

    @property
    def problem(self) -> str:
        """Why the connection is not open ('' while it is)."""
        if self.alive:
            return ""
        conn = getattr(self, "_conn", None)
        closed = getattr(conn, "close_exc", None)
        return self._problem or (f"lost the policy server at {self.uri}: {_why(closed)}" if closed else
                                 f"the connection to {self.uri} closed")

    def call(self, obj: object, timeout_s: float) -> object:
        """Send one frame and return the unpacked answer (a text frame comes back as str: the server's error)."""
        with self._lock:
            try:
                self._conn.send(wire.pack(obj))
                frame = self._conn.recv(timeout=timeout_s)
            except TimeoutError:
                self._problem = (f"the policy server at {self.uri} did not answer within {timeout_s:g} s "
                                 "(policy_server_timeout_s)")
                self.close()
                raise ConfigError(self._problem) from None
            except (OSError, WebSocketException) as exc:
                self._problem = f"lost the policy server at {self.uri}: {_why(exc)}"
                self.close()
                raise ConfigError(self._problem) from None
        return frame if isinstance(frame, str) else wire.unpack(frame)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return f"the connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running? is the port right?)"
    return str(exc) or type(exc).__name__


def spec_from_metadata(metadata: dict) -> PolicySpec:
    """The policy's layout: retain-serve says it; an openpi server serves DROID's (two cameras, 15 Hz, 8 numbers).

    Raises:
        ConfigError: retain-serve reports a layout the DROID request cannot carry.
    """
    info = metadata.get(wire.SERVER_KEY)
    if not isinstance(info, dict):
        return DROID_SPEC
    cameras = tuple(info.get("camera_names", ()))
    unknown = [c for c in cameras if c not in wire.DROID_CAMERAS]
    if unknown or not cameras:
        raise ConfigError(f"the served policy reads cameras {list(cameras)}; openpi's DROID request carries "
                          f"{list(wire.DROID_CAMERAS)} only")
    space = ActionSpace.from_dict(info.get("action_space", DROID_ACTION_SPACE.to_dict()))
    return replace(DROID_SPEC, action_space=space, horizon=int(info.get("horizon", DROID_SPEC.horizon)),
                   dt_s=float(info.get("dt_s", DROID_DT_S)))


def openpi_execution_mode(spec: PolicySpec) -> str:
    """How openpi's DROID client executes a policy's chunks: DROID actions stream, others run as chunks."""
    return "stream" if spec.action_space.kind == DROID_JOINT_VELOCITY else "chunk"


class RemotePolicy:
    """A Policy whose model runs on a policy server (see the module docstring); the manager gives it its link.

    Attributes:
        spec: the served policy's layout (`spec_from_metadata`), fixed at the first connection.
        execution_mode: what the node's `execution_mode: auto` picks: retain-serve says its policy's own choice (as
            the node would run it locally); an openpi server's DROID actions stream, as openpi's DROID client runs them.
        last_identity: what retain-serve said about the merge that computed the last chunk (None: it did not say).
        can_sample: whether the server draws several chunks per request (retain-serve says so; openpi does not).
    """

    def __init__(self, uri: str, timeout_s: float, spec: PolicySpec = DROID_SPEC) -> None:
        self.uri, self.timeout_s, self.spec = uri, timeout_s, spec
        self.execution_mode = openpi_execution_mode(spec)
        self.link: Link | None = None
        self.last_identity: dict | None = None
        self.can_sample = False

    def predict(self, obs: Observation) -> ActionChunk:
        """One round trip: the DROID request out, the checked chunk back.

        Raises:
            ConfigError: a bad observation, no connection, a missed deadline, a server error or a malformed answer.
        """
        return self._ask(obs)[0]

    def sample_chunks(self, obs: Observation, k: int, noise_scale: float | None = None,
                      seed: int | None = None) -> list[ActionChunk]:
        """K chunks from the server's one batched forward (retain-serve's `retain/samples`); the first is predict's.

        Raises:
            ConfigError: as `predict`, or a server that does not draw samples (a plain openpi server).
        """
        if k < 1:
            raise ConfigError(f"sample_chunks needs k >= 1 samples, got {k}")
        if not self.can_sample:
            raise ConfigError(f"the policy server at {self.uri} does not draw several chunks per request (steering "
                              "needs retain-serve)")
        return self._ask(obs, {"k": int(k), "noise_scale": noise_scale, "seed": seed})

    def _ask(self, obs: Observation, samples: dict | None = None) -> list[ActionChunk]:
        validate_observation(obs, self.spec)
        link = self.link
        if link is None or not link.alive:
            raise ConfigError(f"no connection to the policy server at {self.uri}")
        request = wire.droid_request(obs)
        if samples is not None:
            request[wire.SAMPLES] = samples
        answer = link.call(request, self.timeout_s)
        if samples is None or not isinstance(answer, dict):  # a chunk; anything not a map is refused there, named
            chunks = [wire.chunk_from_answer(answer, self.spec.action_space, self.spec.dt_s, obs.stamp_ns)]
        else:
            candidates = answer.get(wire.CANDIDATES)
            if not isinstance(candidates, np.ndarray) or candidates.ndim != 3 or len(candidates) != samples["k"]:
                raise ConfigError(f"the policy server's answer holds no {samples['k']} candidates "
                                  f"({wire.CANDIDATES}); is it retain-serve?")
            chunks = [wire.chunk_from_answer({wire.ACTIONS: c}, self.spec.action_space, self.spec.dt_s, obs.stamp_ns)
                      for c in candidates]
        identity = answer.get(wire.ANSWER_KEY)
        self.last_identity = identity if isinstance(identity, dict) else None
        return chunks


class RemoteModelManager:
    """The node's model manager when the model runs on a policy server (module docstring).

    Args:
        uri: the server's websocket address (`policy_server_uri`, e.g. ws://gpu-host:8000).
        timeout_s: deadline of one answer (`policy_server_timeout_s`).
    """

    def __init__(self, uri: str, timeout_s: float = 1.0) -> None:
        if not uri.startswith(("ws://", "wss://")):
            raise ConfigError(f"policy_server_uri '{uri}' must start with ws:// (e.g. ws://gpu-host:8000)")
        self.uri = uri
        self.policy = RemotePolicy(uri, timeout_s)
        self.weights_lock = threading.Lock()  # the control loop holds it around predict; nothing else writes here
        self.on_hold = None
        self.swap_mode = "remote"
        self.counts = {"requests": 0, "builds": 0, "failures": 0, "swaps": 0, "reconnects": 0}
        self.swap_s = 0.0
        self.last_error = ""
        self.last_event = ""
        self._cond = threading.Condition()
        self._worker = WorkerThread("retain_policy_server_link", self._run)
        self._stop = self._worker.stop_event
        self._wanted: MergeRequest | None = None
        self._wanted_id = 0
        self._sent_id = 0  # the last request the server acknowledged (or refused)
        self._serving: ServingModel | None = None
        self._ready: ServingModel | None = None
        self._connection_problem = "not connected yet"
        self._control: Link | None = None
        self._metadata: dict = {}
        self._spec_fixed = False

    # ------------------------------------------------------------------------------------------------ public API
    def load_initial(self, request: MergeRequest) -> ServingModel:
        """Connect once (the node configures even while the server is down) and serve what the server serves.

        The node's alphas are asked for by the worker before anything is commanded.
        """
        with self._cond:
            self._wanted, self._wanted_id = request, 1
        self._try_connect()
        with self._cond:
            self._spec_fixed = True  # the node configures its executor for this layout
            if self._serving is None:  # no server yet: a placeholder until the first connection says what serves
                self._serving = ServingModel(self.policy, "", {}, request)
            return self._serving

    def start(self) -> None:
        """Start the link worker (reconnection, alpha changes)."""
        self._worker.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the worker (an alpha change waiting for the server is abandoned); returns whether it ended in time."""
        self._stop.set()
        with self._cond:
            control = self._control
            self._cond.notify_all()
        if control is not None:
            control.close()  # wakes a worker waiting for an acknowledgement
        return self._worker.stop(timeout_s)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop the worker and close both connections."""
        stopped = self.stop(timeout_s)
        for link in (self.policy.link, self._control):
            if link is not None:
                link.close()
        self.policy.link = self._control = None
        return stopped

    def request(self, request: MergeRequest) -> int:
        """Ask for new alphas (forwarded by the worker); returns the request id. Never blocks."""
        with self._cond:
            self._wanted_id += 1
            self._wanted = request
            self._ready = None
            self.counts["requests"] += 1
            self._cond.notify_all()
            return self._wanted_id

    def set_content_hash(self, enabled: bool) -> None:
        """The weights live on the server: there is nothing to hash here."""

    @property
    def wanted(self) -> MergeRequest | None:
        """The latest request."""
        with self._cond:
            return self._wanted

    @property
    def serving(self) -> ServingModel | None:
        """What the server serves now, as far as the node knows."""
        return self._serving

    @property
    def content_sha256(self) -> str:
        """Not known here (the weights are on the server)."""
        return ""

    @property
    def standby_ready(self) -> bool:
        """The server keeps its own standby copy."""
        return True

    @property
    def holding(self) -> str:
        """Why nothing may be commanded: no connection, or the node's alphas not yet served after a (re)connection."""
        link = self.policy.link
        with self._cond:
            if link is None or not link.alive:
                why = link.problem if link is not None else self._connection_problem
                return f"{why}; reconnecting"
            if self._retain_serve() and self._sent_id == 0:
                return f"the policy server at {self.uri} is being asked for alphas {self._wanted.describe()}"
            return ""

    @property
    def in_place(self) -> str:
        """The server decides how it merges."""
        return ""

    @property
    def groups(self) -> tuple[str, ...]:
        """The parameter groups retain-serve reports (empty for a plain openpi server)."""
        info = self._metadata.get(wire.SERVER_KEY)
        return tuple(info.get("groups", ())) if isinstance(info, dict) else ()

    def take_swap(self) -> ServingModel | None:
        """Control thread: record an acknowledged alpha change as serving (the server swaps at its next request)."""
        with self._cond:
            ready, self._ready = self._ready, None
            if ready is None:
                return None
            self._serving = replace(ready, generation=self._serving.generation + 1)
            self.counts["swaps"] += 1
            return self._serving

    def computed_by(self, model: ServingModel) -> ServingModel:
        """Control thread, after a predict: the merge the server says computed the chunk (`model` if it agrees)."""
        identity = self.policy.last_identity
        if not identity or identity.get("weights_id") in ("", model.weights_id):
            return model
        with self._cond:
            serving, ready = self._serving, self._ready
            if serving is not None and serving.weights_id == identity.get("weights_id"):
                return serving
            if ready is not None and ready.weights_id == identity.get("weights_id"):  # swapped before it was taken
                self._ready = None
                self._serving = replace(ready, generation=serving.generation + 1)
                self.counts["swaps"] += 1
                return self._serving
            request = self._wanted if identity.get("alphas") == self._wanted.describe() else \
                request_from_identity(identity, model.request.route)
            self._serving = self._model(identity, request, serving.generation + 1 if serving else 1)
            self.last_event = (f"the policy server serves alphas {identity.get('alphas')} (weights "
                               f"{str(identity.get('weights_id'))[:12]}), which the node did not ask for")
            return self._serving

    def idle(self) -> bool:
        """True when every alpha change was acknowledged (or refused) and taken."""
        with self._cond:
            return self._ready is None and (self._sent_id == self._wanted_id or not self._retain_serve())

    def memory(self) -> dict:
        """No weights are held here."""
        return {}

    def server_status(self) -> dict:
        """The server, as `~/status` shows it."""
        info = self._metadata.get(wire.SERVER_KEY)
        info = info if isinstance(info, dict) else {}
        link = self.policy.link
        return {"uri": self.uri, "connected": link is not None and link.alive, "retain_serve": bool(info),
                "base": info.get("base", ""), "finetuned": info.get("finetuned", []),
                "problem": "" if link is not None and link.alive else self._connection_problem}

    # ------------------------------------------------------------------------------------------------ the worker
    def _retain_serve(self) -> bool:
        return isinstance(self._metadata.get(wire.SERVER_KEY), dict)

    def _run(self) -> None:
        while not self._stop.is_set():
            link = self.policy.link
            if link is None or not link.alive:
                if not self._try_connect():
                    self._stop.wait(RETRY_S)
                continue
            with self._cond:
                pending = self._sent_id != self._wanted_id
                request, request_id = self._wanted, self._wanted_id
                if not pending:
                    self._cond.wait(timeout=0.1)
                    continue
            self._forward(request, request_id)

    def _try_connect(self) -> bool:
        """Open the inference link; on success the node's alphas must be asked for again (retain-serve)."""
        try:
            link = Link(self.uri)
            spec = spec_from_metadata(link.metadata)
            if self._spec_fixed and layout(spec) != layout(self.policy.spec):
                link.close()
                raise ConfigError(f"the server at {self.uri} serves a policy with {layout(spec)}; the node was "
                                  f"configured for {layout(self.policy.spec)}: restart the node")
        except ConfigError as exc:
            with self._cond:
                self._connection_problem = str(exc)
            return False
        with self._cond:
            if not self._spec_fixed:
                self.policy.spec, self._spec_fixed = spec, True
                info = link.metadata.get(wire.SERVER_KEY)
                self.policy.execution_mode = info.get("execution_mode", "chunk") if isinstance(info, dict) else \
                    openpi_execution_mode(spec)  # the served policy's own choice, or DROID's
                self.policy.can_sample = isinstance(info, dict) and bool(info.get("can_sample", False))
            old = self.policy.link
            self.policy.link, self._metadata = link, link.metadata
            self._connection_problem = ""
            # retain-serve: ask for the node's alphas again; an openpi server: its own model serves what the node
            # started with (request 1), and every later request is refused with the reason
            self._sent_id = 0 if self._retain_serve() else max(self._sent_id, 1)
            info = link.metadata.get(wire.SERVER_KEY)
            if isinstance(info, dict):  # what serves until the node's alphas are acknowledged
                generation = self._serving.generation + 1 if self._serving is not None else 1
                self._serving = self._model(info, request_from_identity(info, self._wanted.route), generation)
            elif self._serving is None:
                self._serving = ServingModel(self.policy, "", {}, self._wanted)
            if old is not None:
                self.counts["reconnects"] += 1
            self.last_event = f"connected to the policy server at {self.uri}" + (
                " (retain-serve)" if self._retain_serve() else " (an openpi server: its own alphas serve)")
            self._cond.notify_all()
        log.info(self.last_event)
        return True

    def _forward(self, request: MergeRequest, request_id: int) -> None:
        """Ask retain-serve for the request's alphas and wait for the ready merge (on the control link)."""
        if not self._retain_serve():
            with self._cond:
                self._sent_id = request_id
                if request.describe() != (self._serving.request.describe() if self._serving else ""):
                    self.counts["failures"] += 1
                    self.last_error = self.last_event = (
                        f"alphas {request.describe()} not applied: the policy server at {self.uri} is not retain-serve "
                        "and serves its own model; start retain-serve there to change alphas from the node")
            return
        spec = {"alpha": _listed(request.alpha), "group_alpha": {g: _listed(v) for g, v in request.group_alpha.items()}}
        try:
            if self._control is None or not self._control.alive:
                self._control = Link(self.uri)
            answer = self._control.call({wire.SET_ALPHAS: spec}, MERGE_TIMEOUT_S)
        except ConfigError as exc:
            with self._cond:
                self._control = None
                self.last_error = self.last_event = f"alphas {request.describe()} not forwarded: {exc}"
            self._stop.wait(RETRY_S)
            return
        with self._cond:
            if isinstance(answer, dict) and isinstance(answer.get(wire.ACK), dict):
                self.counts["builds"] += 1
                if request_id == self._wanted_id:
                    identity = answer[wire.ACK]
                    generation = self._serving.generation if self._serving else 0
                    self._ready = self._model(identity, request, generation)
                    self.last_error = ""
                    self.last_event = (f"the policy server merged alphas {request.describe()} (weights "
                                       f"{str(identity.get('weights_id'))[:12]})")
            else:
                why = answer.get(wire.ERROR) if isinstance(answer, dict) else answer
                self.counts["failures"] += 1
                self.last_error = self.last_event = f"alphas {request.describe()} refused by the policy server: {why}"
            self._sent_id = request_id
            self._cond.notify_all()

    def _model(self, identity: dict, request: MergeRequest, generation: int) -> ServingModel:
        alphas = {g: tuple(v) for g, v in dict(identity.get("weights_alphas", {})).items()}
        return ServingModel(self.policy, str(identity.get("weights_id", "")), alphas, request, generation=generation,
                            request_id=int(identity.get("request_id", 0)))


def layout(spec: PolicySpec) -> dict:
    """What the node's executor and inputs depend on: cameras, action space and action period."""
    return {"cameras": spec.camera_names, "actions": spec.action_space.to_dict(), "dt_s": round(spec.dt_s, 6)}


def _listed(value: float | tuple[float, ...]) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (tuple, list)) else [float(value)]


def request_from_identity(identity: dict, route: str) -> MergeRequest:
    """A MergeRequest describing alphas the server chose (its start-up alphas, or another client's)."""
    groups = {g: tuple(v) for g, v in dict(identity.get("weights_alphas", {})).items()}
    values = set(groups.values())
    if len(values) == 1:
        (alpha,) = values
        return MergeRequest("", alpha=alpha if len(alpha) > 1 else alpha[0], route=route)
    return MergeRequest("", alpha=0.0, group_alpha=groups, route=route)
