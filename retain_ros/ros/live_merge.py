"""Live re-merge for the policy node: parameter changes -> new weights -> one-step swap between chunks (no ROS).

Threads and ownership:
- the caller (the node's parameter callback or a service) calls `request()`: it only stores the wish and wakes the
  worker, so a burst of changes coalesces and the last one wins;
- the merge worker thread builds the next model *completely* (resident re-merge through `ResidentMerger`, weights
  loaded into a standby policy that nobody is running, fingerprint computed) and parks it in `_ready`;
- the control thread calls `take_swap()` between two chunks: one reference assignment makes the new model serve.
  The chunk that is running keeps its policy object to the end, so every chunk comes from exactly one merge, and the
  fingerprint reported with a chunk is that of the policy that computed it.
A failed build (bad file, wrong architecture, unknown group) is reported in `status()` and the old model keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from retain_ros.errors import ConfigError
from retain_ros.merge.maths import AlphaSpec, fingerprint_tensors
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import Policy, load_policy
from retain_ros.ros.worker_thread import WorkerThread

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeRequest:
    """What the node's parameters ask for.

    Attributes:
        base: pretrained checkpoint (resolved path).
        finetuned: finetuned checkpoints (resolved paths; several = sequential skills; none = serve the base).
        alpha: merge weight of every group without its own.
        group_alpha: group -> its own alpha (groups left out use `alpha`).
        preset: parameter-group preset name or YAML path.
        reload: re-read the checkpoint files even if the paths did not change.
    """

    base: str
    finetuned: tuple[str, ...] = ()
    alpha: float = 0.0
    group_alpha: dict[str, float] = field(default_factory=dict)
    preset: str = "auto"
    reload: bool = False

    def files_key(self) -> tuple:
        """What decides whether the files must be read again."""
        return (self.base, self.finetuned, self.preset)

    def alpha_spec(self) -> AlphaSpec:
        """The merge weights as an AlphaSpec."""
        return AlphaSpec.uniform(self.alpha, **self.group_alpha)


@dataclass(frozen=True)
class ServingModel:
    """A complete model ready to serve.

    Attributes:
        policy: the policy object (never modified after it is handed over).
        fingerprint: sha256 of its weights.
        alphas: group -> resolved alphas ({} when serving the base alone).
        request: the request it was built for.
        generation: 1 for the first model, +1 per swap.
        merge_s: re-merge time; load_s: loading the weights into the policy; build_s: the whole build
            (incl. reading files on a reload); request_to_ready_s: from the request to ready-to-swap.
        pending: merged weights still to be copied into `policy` when it swaps in (policies that swap in place).
    """

    policy: Policy
    fingerprint: str
    alphas: dict[str, tuple[float, ...]]
    request: MergeRequest
    generation: int = 1
    merge_s: float = 0.0
    load_s: float = 0.0
    build_s: float = 0.0
    request_to_ready_s: float = 0.0
    requested_at: float = 0.0
    pending: Mapping[str, torch.Tensor] | None = None


def same_architecture(a: Policy, b: Policy) -> str | None:
    """None when both policies have the same weight names, shapes and spec; otherwise why not."""
    if a.spec != b.spec:
        return f"policy spec differs ({a.spec} vs {b.spec})"
    shapes_a = {n: tuple(t.shape) for n, t in a.named_parameters()}
    shapes_b = {n: tuple(t.shape) for n, t in b.named_parameters()}
    if shapes_a != shapes_b:
        diff = sorted(set(shapes_a.items()) ^ set(shapes_b.items()))[:3]
        return f"weight names/shapes differ (e.g. {diff})"
    return None


class ModelManager:
    """Owns the serving model, the resident merger and the merge worker.

    Args:
        device: torch device of the merger and the policy.
        seed: sampling seed passed to the policy loader.
        io_mapping: how a LeRobot policy's features map to the node's streams (`LeRobotIO`); other backends ignore it.
    """

    def __init__(self, device: str = "cpu", seed: int = 0, io_mapping: object | None = None) -> None:
        self.device = device
        self.seed = seed
        self.io_mapping = io_mapping
        self._cond = threading.Condition()
        self._worker = WorkerThread("retain_merge_worker", self._run)
        self._stop = self._worker.stop_event
        self._wanted: MergeRequest | None = None
        self._wanted_id = 0
        self._wanted_at = 0.0
        self._done_id = 0
        self._ready: ServingModel | None = None
        self._serving: ServingModel | None = None
        self._merger: ResidentMerger | None = None
        self._merger_key: tuple | None = None
        self._buffers = None
        self._standby: Policy | None = None
        self.counts = {"requests": 0, "builds": 0, "failures": 0, "swaps": 0}
        self.last_error = ""
        self.last_event = ""

    # ---------------------------------------------------------------------------------------------- public API
    def load_initial(self, request: MergeRequest) -> ServingModel:
        """Build and serve the first model synchronously (called while configuring).

        Raises:
            ConfigError: the checkpoints cannot be loaded or merged.
        """
        model = self._build(request, first=True)
        self._serving = model
        self._wanted, self._done_id = request, 0
        return model

    def start(self) -> None:
        """Start the merge worker thread.

        Raises:
            RuntimeError: the previous worker is still running (its stop timed out); there are never two.
        """
        self._worker.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the worker (a merge in progress finishes first); returns whether it ended within `timeout_s`."""
        self._worker.stop_event.set()
        with self._cond:
            self._cond.notify_all()
        return self._worker.stop(timeout_s)

    def request(self, request: MergeRequest) -> int:
        """Ask for a new model; returns the request id. Never blocks on a merge."""
        with self._cond:
            self._wanted_id += 1
            self._wanted = request
            self._wanted_at = time.perf_counter()
            self.counts["requests"] += 1
            self._cond.notify_all()
            return self._wanted_id

    @property
    def wanted(self) -> MergeRequest | None:
        """The latest request (or the initial one)."""
        with self._cond:
            return self._wanted

    @property
    def serving(self) -> ServingModel | None:
        """The model serving now (read by the control thread)."""
        return self._serving

    @property
    def groups(self) -> tuple[str, ...]:
        """The parameter groups of the current preset (empty before the first merge or without finetuned)."""
        merger = self._merger
        return tuple(merger.groups) if merger is not None else ()

    def take_swap(self) -> ServingModel | None:
        """Control thread, between chunks: make a ready model serve. Returns it, or None when nothing was ready.

        A policy that swaps in place (one copy of a large model) gets its merged weights copied in here, on the control
        thread, so no chunk runs on half-copied weights; the worker waits meanwhile (`_ready` is still set), so the
        merge buffers stay untouched until the copy is done.
        """
        with self._cond:
            ready = self._ready
        if ready is None:
            return None
        if ready.pending is not None:
            started = time.perf_counter()
            try:
                ready.policy.load_merged(ready.pending)
            except Exception as exc:  # noqa: BLE001  (the policy keeps its old weights; keep serving them)
                with self._cond:
                    self._ready = None
                    self._failed(f"swap refused, old model kept: {exc}")
                    self._cond.notify_all()
                return None
            ready = replace(ready, pending=None, load_s=time.perf_counter() - started)
        with self._cond:
            self._ready = None
            old, self._serving = self._serving, ready
            if old is not None and old.policy is not ready.policy and not ready.request.reload and \
                    old.request.files_key() == ready.request.files_key():
                self._standby = old.policy  # nobody runs it any more: the next alpha-only merge loads into it
            else:
                self._standby = None
            self.counts["swaps"] += 1
            self._cond.notify_all()
            return ready

    def idle(self) -> bool:
        """True when no request is waiting, building or waiting to be swapped in."""
        with self._cond:
            return self._ready is None and self._done_id == self._wanted_id

    # ------------------------------------------------------------------------------------------------- worker
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and (self._done_id == self._wanted_id or self._ready is not None):
                    self._cond.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                request, request_id, asked_at = self._wanted, self._wanted_id, self._wanted_at
            try:
                model = self._build(request)
                model = replace(model, request_to_ready_s=time.perf_counter() - asked_at, requested_at=asked_at)
                with self._cond:
                    self._ready = model
                    self.last_error = ""
                    self.last_event = (f"model for alphas {model.alphas} ready in {model.build_s:.3f} s "
                                       f"(fingerprint {model.fingerprint[:12]})")
            except Exception as exc:  # noqa: BLE001  (any failure keeps the old model serving; report it)
                reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, ConfigError):
                    log.error("merge worker failed:\n%s", traceback.format_exc())
                with self._cond:
                    self._failed(f"request {request_id} rejected, old model kept: {reason}")
            finally:
                with self._cond:
                    self._done_id = request_id
                    self._cond.notify_all()

    def _failed(self, message: str) -> None:
        """Count and report a failed build or swap (caller holds `_cond`); the old model keeps serving."""
        self.counts["failures"] += 1
        self.last_error = self.last_event = message

    def _load(self, checkpoint: str) -> Policy:
        return load_policy(checkpoint, device=self.device, seed=self.seed, io_mapping=self.io_mapping)

    def _build(self, request: MergeRequest, first: bool = False) -> ServingModel:
        """Build a complete model for `request` without touching the serving one."""
        started = time.perf_counter()
        reread = first or request.reload or self._merger_key != request.files_key()
        in_place = False  # an alpha-only change for a policy held once: the weights are copied in by take_swap
        if reread:
            policy = self._load(request.base)
            if self._serving is not None:
                why = same_architecture(policy, self._serving.policy)
                if why is not None:
                    raise ConfigError(f"checkpoint {request.base} has a different architecture than the serving "
                                      f"model: {why}. Fix: use a checkpoint of the same model")
            merger = (ResidentMerger.from_checkpoints(request.base, list(request.finetuned), groups=request.preset,
                                                      device=self.device) if request.finetuned else None)
            buffers = None
        else:
            serving = self._serving.policy if self._serving is not None else None
            in_place = bool(getattr(serving, "swaps_in_place", False))
            policy = serving if in_place else (self._standby or self._load(request.base))
            merger, buffers = self._merger, self._buffers
        merge_s = load_s = 0.0
        pending = None
        if merger is not None:
            if buffers is None:
                buffers = merger.allocate()
            merged = merger.merge(request.alpha_spec(), out=buffers)
            merge_s = merged.seconds
            t0 = time.perf_counter()
            if in_place:
                pending = merged.tensors  # copied into the serving policy by take_swap, between two chunks
            else:
                policy.load_merged(merged.tensors)  # copies: the buffers are free again for the next merge
            load_s = time.perf_counter() - t0
            fingerprint, alphas = merged.fingerprint(), merged.alphas
        else:
            fingerprint, alphas = fingerprint_tensors(dict(policy.named_parameters())), {}
        if reread:  # commit only after success: a failure keeps the old merger
            self._merger, self._merger_key, self._standby = merger, request.files_key(), None
        self._buffers = buffers
        self.counts["builds"] += 1
        generation = 1 if self._serving is None else self._serving.generation + 1
        return ServingModel(policy, fingerprint, alphas, request, generation, merge_s, load_s,
                            time.perf_counter() - started, pending=pending)
