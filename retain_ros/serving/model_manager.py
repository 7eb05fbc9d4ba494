"""Live re-merge for the policy node: parameter changes -> new weights -> one-step swap between chunks (no ROS).

Threads and ownership:
- the caller (the node's parameter callback or a service) calls `request()`: it only stores the wish and wakes the
  worker, so a burst of changes coalesces and the last one wins;
- the merge worker thread writes the next weights *completely* into a spare copy of the policy, which nobody runs
  (`LiveMerger.merge_into`; the inputs resident on the device or streamed to it, see `merge/live.py`), and parks the
  result in `_ready`. Its identity is the recipe's (input digests, alphas, preset, mode, engine version), known without
  reading the weights;
- the control thread calls `take_swap()` between two chunks: `promote_standby` (a reference swap) makes the new copy
  serve. The chunk that ran before kept its copy to the end, so every chunk comes from exactly one merge, and the
  identity reported with a chunk is that of the weights that computed it. Nothing is copied on the control thread.
- the recipe cache: the copy a swap replaced keeps its merge in that spare copy, so asking for it again (an
  instruction switching back to its recipe) is a reference swap, found by `request()` at once. Spare copies are
  bounded by `cache_budget_bytes` (at least one, the live merge's standby) and by the device's free memory; the
  least recently served merge is overwritten first. A merge that a newer request superseded before it was swapped
  in is never served: it goes into the cache.
- when idle, the worker may hash the serving weights (`content_hash`), in steps it interrupts for a new request.
- one copy (`swap_mode` in_place, or auto when two copies do not fit or the standby copy failed): there is no spare
  copy; an alpha change is merged into the serving weights themselves. The worker first holds the arm (`on_hold`:
  the control loop stops the running motion and commands nothing), then takes `weights_lock` (which every predict
  holds) and merges; the hold ends when the control thread takes the swap, so a chunk computed while the weights
  changed is never sent. A merge that fails half-way is repaired by merging the serving recipe again; if even that
  fails, the arm stays held and the status says why.
Memory: the serving copy, the spare copies and, with the resident layout, the inputs. A reload (new files) first frees
the spare copies and the old inputs, then loads the new policy next to the serving one and merges into it before it
serves: at most two copies of the model at once. A failed build (bad file, wrong architecture, unknown group) is
reported in `status()`, what it allocated is freed, and the old model keeps serving.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from retain_ros.errors import ConfigError
from retain_ros.merge.live import (LiveMerger, MemoryPlan, check_layout, free_memory_bytes, lower_thread_priority,
                                   model_bytes)
from retain_ros.merge.maths import AlphaSpec, ContentHasher
from retain_ros.merge.plan import MergePlan, plan_merge
from retain_ros.merge.recipe import base_recipe_id
from retain_ros.policy.interface import Policy, load_policy
from retain_ros.merge.statistics import check_action_kind, processor_files, read_stats, statistics_source
from retain_ros.serving.recipes import MergeRequest
from retain_ros.worker_thread import WorkerThread

log = logging.getLogger(__name__)


STANDBY = "standby"  # the first spare copy: the live merge's
SWAP_MODES = ("auto", "standby", "in_place")
DEFAULT_CACHE_BYTES = 1 << 30  # spare copies' memory, besides the serving copy (node parameter recipe_cache_gb)
_SPARE_HEADROOM_BYTES = 1 << 30  # left free on the device when a spare copy beyond the first is made


@dataclass(frozen=True)
class ServingModel:
    """A complete model ready to serve.

    Attributes:
        policy: the policy object (its serving copy is never written while it serves).
        weights_id: identity of its weights: the sha256 of the merge recipe (`merge.recipe`).
        alphas: group -> resolved alphas ({} when serving the base alone).
        request: the request it was built for.
        generation: 1 for the first model, +1 per swap.
        merge_s: the merge into the standby copy; load_s: loading a policy from its checkpoint (reloads only);
            build_s: the whole build; request_to_ready_s: from the request to ready-to-swap.
        promote: the swap promotes the policy's spare copy `slot` (an alpha change); False: `policy` is a new object,
            or the serving copy under a new request.
        memory: the merge layout and its memory accounting (None when the base serves alone).
        slot: the spare copy holding the weights until they serve.
        request_id: the request it answers (`ModelManager.request`).
        cached: found in the recipe cache (no merge ran for it).
        statistics: whose LeRobot normalisation statistics the policy runs through, and why (None: not LeRobot's).
        in_place: merged into the serving copy while the arm was held (the hold ends when it is taken).
    """

    policy: Policy
    weights_id: str
    alphas: dict[str, tuple[float, ...]]
    request: MergeRequest
    generation: int = 1
    merge_s: float = 0.0
    load_s: float = 0.0
    build_s: float = 0.0
    request_to_ready_s: float = 0.0
    requested_at: float = 0.0
    promote: bool = False
    memory: MemoryPlan | None = None
    slot: str = ""
    request_id: int = 0
    cached: bool = False
    statistics: dict[str, str] | None = None
    in_place: bool = False


@dataclass(frozen=True)
class CachedRecipe:
    """A complete merge kept in a spare copy: what a cache hit serves.

    Attributes:
        slot: the spare copy's name; alphas: the resolved alphas; request: the request it was built for.
    """

    slot: str
    alphas: dict[str, tuple[float, ...]]
    request: MergeRequest


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
    """Owns the serving model, the live merger and the merge worker.

    Args:
        device: torch device of the merge and the policy.
        seed: sampling seed passed to the policy loader.
        io_mapping: how a LeRobot policy's features map to the node's streams (`LeRobotIO`); other backends ignore it.
        content_hash: hash the serving weights when idle (`content_sha256`), off the critical path.
        cache_budget_bytes: memory of the spare copies (the recipe cache) besides the serving copy; at least one
            spare copy is always made, as live merges need it.
        stats: LeRobot checkpoints whose normalisation statistics differ: '' refuses them, 'base' or 'finetuned'
            picks whose processors every alpha runs through (`merge.statistics.statistics_source`).
        dtype: '' (the checkpoint's), 'bfloat16' or 'float32' for LeRobot pi0 / pi0.5 (`LeRobotPolicy`).
        swap_mode: 'standby' (a spare copy: alpha changes never interrupt control), 'in_place' (one copy: the arm is
            held while each alpha change is merged into it), or 'auto' (standby where two copies fit the device's
            free memory and the standby copy could be made, else in place).

    Attributes:
        on_hold: called by the worker with the reason before it writes the serving weights; returns once nothing more
            is commanded (`ControlLoop.hold_for_merge`). None: nothing to hold (no control loop).
        weights_lock: held by every predict on the serving copy and by an in-place merge.
    """

    def __init__(self, device: str = "cpu", seed: int = 0, io_mapping: object | None = None,
                 content_hash: bool = False, cache_budget_bytes: int = DEFAULT_CACHE_BYTES, stats: str = "",
                 dtype: str = "", swap_mode: str = "auto") -> None:
        if swap_mode not in SWAP_MODES:
            raise ConfigError(f"swap_mode='{swap_mode}' is unknown; use one of {', '.join(SWAP_MODES)}")
        self.device = device
        self.swap_mode = swap_mode
        self.on_hold = None
        self.weights_lock = threading.Lock()
        self._in_place = ""  # why alpha changes merge into the serving copy ('' = into a spare copy)
        self._hold = ""  # why the arm is held for an in-place merge ('' = not held)
        self.dtype = dtype  # LeRobot pi0 / pi0.5 weight precision ('' = the checkpoint's)
        self.stats = stats  # LeRobot statistics when base and finetuned differ: '' (refuse), base or finetuned
        self.cache_budget_bytes = int(cache_budget_bytes)
        self.seed = seed
        self.io_mapping = io_mapping
        self.content_hash = content_hash
        self._cond = threading.Condition()
        self._worker = WorkerThread("retain_merge_worker", self._run)
        self._stop = self._worker.stop_event
        self._wanted: MergeRequest | None = None
        self._wanted_id = 0
        self._wanted_at = 0.0
        self._done_id = 0
        self._ready: ServingModel | None = None
        self._serving: ServingModel | None = None
        self._merger: LiveMerger | None = None
        self._groups: tuple[str, ...] = ()
        self._base_id = ""
        self._hasher: tuple[int, ContentHasher] | None = None
        self._standby_of: Policy | None = None  # the policy whose standby copy exists
        self._slots: list[str] = []  # the serving policy's spare copies, in the order they were made
        self._busy: set[str] = set()  # spare copies being written, or holding the ready model
        self._cache: OrderedDict[str, CachedRecipe] = OrderedDict()  # weights_id -> kept merge, least recent first
        self._building: MergeRequest | None = None  # what the worker builds now
        self._retired: weakref.ref = lambda: None  # the policy a reload replaced, until it is freed
        self._content: tuple[int, str] = (0, "")
        self.counts = {"requests": 0, "builds": 0, "failures": 0, "swaps": 0, "cache_hits": 0, "superseded": 0}
        self.swap_s = 0.0  # the last swap's time on the control thread
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

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop the worker and let go of every model copy and the merge inputs (the node's cleanup).

        Returns whether the worker ended within `timeout_s`.
        """
        stopped = self.stop(timeout_s)
        with self._cond:
            if self._serving is not None:
                self._serving.policy.release_standby()
            if self._merger is not None:
                self._merger.close()
            self._serving = self._ready = self._merger = self._hasher = self._standby_of = None
            self._forget_spares()
        collect_cycles()
        return stopped

    def request(self, request: MergeRequest) -> int:
        """Ask for a new model; returns the request id. Never blocks on a merge.

        A model ready but not yet swapped in for an older request is superseded: it goes into the recipe cache and is
        never served. A recipe the cache holds (or the serving copy has) is ready at once, for the next `take_swap`.
        """
        with self._cond:
            self._wanted_id += 1
            self._wanted = request
            self._wanted_at = time.perf_counter()
            self.counts["requests"] += 1
            ready = self._ready
            if ready is not None and ready.policy is self._serving.policy and not ready.in_place:
                self._ready = None  # an in-place merge is in the serving weights already: it is swapped in
                self._park(ready)
            if self._ready is None:
                hit = self._lookup(request)
                if hit is not None:
                    self._ready = hit if hit.promote else None
                    self._done_id = self._wanted_id
                    self.last_error = ""
            self._cond.notify_all()
            return self._wanted_id

    def wait_for(self, request_id: int, timeout_s: float) -> ServingModel:
        """Block until request `request_id` is answered; returns the model that serves it (ready to swap, or serving).

        Raises:
            ConfigError: the request failed (the reason), a newer request replaced it, or `timeout_s` passed.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._wanted_id != request_id:
                    raise ConfigError(f"request {request_id} was replaced by request {self._wanted_id}")
                if self._done_id >= request_id:
                    if self.last_error:
                        raise ConfigError(self.last_error)
                    return self._ready if self._ready is not None else self._serving
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConfigError(f"request {request_id} was not ready within {timeout_s:g} s")
                self._cond.wait(remaining)

    def set_content_hash(self, enabled: bool) -> None:
        """Turn hashing of the serving weights on or off (takes effect when the worker is next idle)."""
        with self._cond:
            self.content_hash = bool(enabled)
            self._cond.notify_all()

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
    def content_sha256(self) -> str:
        """sha256 of the serving weights (`fingerprint_tensors`), once hashed; '' before or when off."""
        with self._cond:
            generation, digest = self._content
            serving = self._serving
            return digest if serving is not None and generation == serving.generation else ""

    @property
    def standby_ready(self) -> bool:
        """Whether the next alpha change can merge at once (the standby copy exists, or none is needed)."""
        with self._cond:
            return not self._standby_missing()

    @property
    def holding(self) -> str:
        """Why the arm is held for an in-place merge: from before it writes the weights until its swap ('' = not)."""
        with self._cond:
            return self._hold

    @property
    def in_place(self) -> str:
        """Why alpha changes are merged into the serving copy ('' = into a spare copy: two copies)."""
        with self._cond:
            return self._in_place

    @property
    def groups(self) -> tuple[str, ...]:
        """The parameter groups of the serving model's preset (empty before the first merge or without finetuned)."""
        return self._groups

    def take_swap(self) -> ServingModel | None:
        """Control thread, between chunks: make a ready model serve. Returns it, or None when nothing was ready.

        An alpha change promotes a spare copy of the policy (a reference swap; the copy that served becomes that spare
        and keeps its merge in the cache); a reload replaces the policy object. Either way nothing is copied here.
        """
        with self._cond:
            ready = self._ready
            if ready is None:
                return None
            started = time.perf_counter()
            self._ready = None
            old = self._serving
            if ready.promote:
                try:
                    ready.policy.promote_standby(ready.slot)
                except Exception as exc:  # noqa: BLE001  (the policy keeps its serving copy; keep serving it)
                    self._busy.discard(ready.slot)
                    self._failed(f"swap refused, old model kept: {exc}")
                    self._cond.notify_all()
                    return None
                self._busy.discard(ready.slot)
                if old.request.finetuned and old.weights_id not in self._cache:  # the spare now holds what served
                    self._cache[old.weights_id] = CachedRecipe(ready.slot, old.alphas, old.request)
            if old.policy is not ready.policy:  # a reload: the old model is freed once the last chunk lets go of it
                self._retired, self._hasher = weakref.ref(old.policy), None
            self._serving = ready = replace(ready, generation=old.generation + 1)
            if ready.in_place or ready.policy is not old.policy:
                self._hold = ""  # the loop commands again, from these (or a reload's fresh) weights
            self.swap_s = time.perf_counter() - started
            self.counts["swaps"] += 1
            self._cond.notify_all()
            return ready

    def computed_by(self, model: ServingModel) -> ServingModel:
        """The model that computed the chunk `model.policy` just predicted: `model` (swaps happen between chunks)."""
        return model

    def idle(self) -> bool:
        """True when no request is waiting, building or waiting to be swapped in."""
        with self._cond:
            return self._ready is None and self._done_id == self._wanted_id

    def memory(self) -> dict:
        """The merge layout and its memory accounting (GB), with the recipe cache, for the status."""
        with self._cond:
            serving = self._serving
            plan = serving.memory if serving is not None else None
            if plan is None:
                return {}
            spares = len(self._slots)
            cached = [{"weights": wid[:12], "route": entry.request.route, "alphas": entry.request.describe()}
                      for wid, entry in reversed(self._cache.items())]
            return {"layout": plan.layout, "reason": plan.reason, "model_gb": round(plan.model_bytes / 1e9, 4),
                    "copies": 1 + spares, "swap_mode": self.swap_mode, "in_place": self._in_place,
                    # the layout's accounting counts one spare copy; the cache may hold more, in place none
                    "device_gb": round((plan.device_bytes + (spares - 1) * plan.model_bytes) / 1e9, 4),
                    "host_gb": round(plan.host_bytes / 1e9, 4), "spare_copies": spares,
                    "cache_capacity": self._capacity(), "cache_budget_gb": round(self.cache_budget_bytes / 1e9, 4),
                    "cache_gb": round(spares * plan.model_bytes / 1e9, 4), "cached_recipes": cached}

    # ------------------------------------------------------------------------------------------------- recipe cache
    def _capacity(self) -> int:
        """How many spare copies the budget allows (at least one: live merges write into it)."""
        merger = self._merger
        size = merger.memory.model_bytes if merger is not None else 0
        return max(1, self.cache_budget_bytes // size) if size > 0 else 1

    def _lookup(self, request: MergeRequest) -> ServingModel | None:
        """A request the serving copy or the cache already holds (caller holds `_cond`); None: it needs a build.

        The serving copy: it serves on under the new request (`promote` false). The cache: its spare copy is ready to
        promote. Only for the serving files, and never while a reload is building.
        """
        serving, merger, building = self._serving, self._merger, self._building
        if (serving is None or merger is None or self._hold or not request.finetuned or request.reload
                or request.files_key() != serving.request.files_key()
                or (building is not None and (building.reload or building.files_key() != serving.request.files_key()))):
            return None
        try:
            alphas = merger.resolve(request.alpha_spec())
        except ConfigError:  # the worker reports it
            return None
        weights_id = merger.recipe_id(alphas)
        if weights_id == serving.weights_id:
            self._serving = replace(serving, request=request)  # the same weights, now for this request's route
            return replace(serving, request=request, promote=False, request_id=self._wanted_id)
        entry = self._cache.pop(weights_id, None)
        if entry is None:
            return None
        self._busy.add(entry.slot)
        self.counts["cache_hits"] += 1
        self.last_event = f"recipe {request.describe()} found in the cache (weights {weights_id[:12]})"
        return ServingModel(serving.policy, weights_id, entry.alphas, request, promote=True, memory=merger.memory,
                            slot=entry.slot, request_id=self._wanted_id, cached=True,
                            request_to_ready_s=time.perf_counter() - self._wanted_at, requested_at=self._wanted_at,
                            statistics=serving.statistics)

    def _claim_slot(self) -> str:
        """A spare copy to merge into (caller holds `_cond`).

        A free one; else a new one while the budget and the device's memory allow; else the least recently served
        cached merge's.
        """
        held = self._busy | {entry.slot for entry in self._cache.values()}
        free = [slot for slot in self._slots if slot not in held]
        if free:
            slot = free[0]
        elif not self._slots or (len(self._slots) < self._capacity() and self._room_for_a_copy()):
            slot = STANDBY if not self._slots else f"spare_{len(self._slots)}"
            self._slots.append(slot)
        elif self._cache:
            _, evicted = self._cache.popitem(last=False)
            slot = evicted.slot
        else:
            raise ConfigError("no spare copy to merge into (all are in use); this is a bug, please report it")
        self._busy.add(slot)
        return slot

    def _room_for_a_copy(self) -> bool:
        merger = self._merger
        size = merger.memory.model_bytes if merger is not None else 0
        return free_memory_bytes(self.device) >= size + _SPARE_HEADROOM_BYTES

    def _park(self, model: ServingModel) -> None:
        """Keep a complete merge that will not serve now in the cache (caller holds `_cond`)."""
        if not model.promote or model.policy is not self._serving.policy:
            return  # the serving copy under another request, or a replaced policy: nothing to keep
        self._busy.discard(model.slot)
        self.counts["superseded"] += 1
        if model.weights_id != self._serving.weights_id:
            self._cache[model.weights_id] = CachedRecipe(model.slot, model.alphas, model.request)

    def _forget_spares(self) -> None:
        """The spare copies are gone (a reload or close freed them)."""
        self._slots, self._busy, self._cache = [], set(), OrderedDict()

    # ------------------------------------------------------------------------------------------------- worker
    def _run(self) -> None:
        lower_thread_priority()  # merging and hashing are background work: the control thread comes first
        while not self._stop.is_set():
            with self._cond:
                build = self._done_id != self._wanted_id and self._ready is None
                # not while a model a reload replaced is still alive: never three copies at once
                standby = (not build and self._ready is None and self._standby_missing()
                           and self._retired() is None)
                hashing = not build and not standby and self._hash_job()
                if not build and not standby and not hashing:
                    self._cond.wait(timeout=0.5)
                    continue
                request, request_id, asked_at = self._wanted, self._wanted_id, self._wanted_at
                policy = self._serving.policy if standby else None
                current = self._serving.request if standby else None
                self._building = request if build else None
            if policy is not None:
                self._prepare_standby(policy, current)
                policy = current = None  # no reference of this thread keeps a replaced model alive
                continue
            if hashing:
                self._hash_step()
                continue
            try:
                model = self._build(request)
                with self._cond:
                    self._building = None
                    self.last_error = ""
                    if model is None:  # the serving copy already has these weights
                        continue
                    model = replace(model, request_to_ready_s=time.perf_counter() - asked_at, requested_at=asked_at,
                                    request_id=request_id)
                    if (request_id != self._wanted_id and model.policy is self._serving.policy
                            and not model.in_place):
                        self._park(model)  # superseded while it merged: never served
                        self.last_event = (f"merge for {model.request.describe()} superseded by a newer request; "
                                           f"kept in the recipe cache (weights {model.weights_id[:12]})")
                    else:
                        self._ready = model
                        self.last_event = (f"model for alphas {model.alphas} ready in {model.build_s:.3f} s "
                                           f"(weights {model.weights_id[:12]})")
            except Exception as exc:  # noqa: BLE001  (any failure keeps the old model serving; report it)
                reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, ConfigError):
                    log.error("merge worker failed:\n%s", traceback.format_exc())
                with self._cond:
                    self._building = None
                    kept = "the arm is held" if self._hold else "old model kept"  # held: a failed restore
                    self._failed(f"request {request_id} rejected, {kept}: {reason}")
            finally:
                with self._cond:
                    self._done_id = max(self._done_id, request_id)
                    self._cond.notify_all()

    def _prepare_standby(self, policy: Policy, current: MergeRequest) -> None:
        """Make the standby copy and merge the serving alphas into it once, right after a start or a reload.

        Then the first alpha change neither waits for the copy's memory nor pays the first pass over the inputs
        (measured on CPU: reading page-cache pages the second time costs ~1.6x later passes, the kernel promoting
        them to its active list). A failure here (e.g. out of memory) is logged; the next alpha change tries again
        and reports it.
        """
        with self._cond:
            if STANDBY not in self._slots:
                self._slots.append(STANDBY)
            self._busy.add(STANDBY)
        try:
            targets = policy.weight_targets(STANDBY)
            self._merger.merge_into(current.alpha_spec(), targets)
        except Exception as exc:  # noqa: BLE001  (the worker must survive; a request reports a lasting problem)
            with self._cond:
                policy.release_standby(STANDBY)
                self._slots.remove(STANDBY)
                if self.swap_mode == "auto":  # one copy from now on (until a reload)
                    self._in_place = (f"the standby copy could not be made ({exc}); alpha changes are merged into "
                                      "the serving copy, holding the arm")
                    self.last_event = self._in_place
            # the message only: a log handler keeping the exception would keep its frames and this model alive
            if self.swap_mode == "auto":
                log.warning("%s", self._in_place)
            else:
                log.warning("could not prepare the standby copy now (%s); the next alpha change makes it", str(exc))
        finally:
            with self._cond:
                self._busy.discard(STANDBY)
        self._standby_of = policy

    def _standby_missing(self) -> bool:
        """Whether the serving policy has no standby copy yet while there are merges to come (caller holds `_cond`)."""
        serving = self._serving
        return (serving is not None and self._merger is not None and not self._in_place
                and self._standby_of is not serving.policy)

    def _hash_job(self) -> bool:
        """Whether the serving weights still need hashing; prepares the hasher (caller holds `_cond`)."""
        serving = self._serving
        if (not self.content_hash or serving is None or self._ready is not None or self._hold
                or self._content[0] == serving.generation):
            return False
        if self._hasher is None or self._hasher[0] != serving.generation:
            # under _cond: take_swap cannot promote meanwhile, so these are the serving copy's tensors
            self._hasher = (serving.generation, ContentHasher(dict(serving.policy.named_parameters())))
        return True

    def _hash_step(self) -> None:
        """Hash one piece of the serving weights (only this thread writes weights, and only the standby copy)."""
        generation, hasher = self._hasher
        try:
            finished = hasher.step()
        except Exception as exc:  # noqa: BLE001  (e.g. a device error: no hash for this model, the worker goes on)
            log.warning("content hash of generation %d failed: %s", generation, str(exc))
            with self._cond:
                self._content, self._hasher = (generation, ""), None
                self.last_event = f"content hash of generation {generation} failed: {exc}"
            return
        if finished:
            with self._cond:
                self._content, self._hasher = (generation, hasher.hexdigest()), None

    def _failed(self, message: str) -> None:
        """Count and report a failed build or swap (caller holds `_cond`); the old model keeps serving."""
        self.counts["failures"] += 1
        self.last_error = self.last_event = message

    def _statistics(self, request: MergeRequest) -> tuple[Path, dict[str, str] | None]:
        """Whose LeRobot statistics the merge runs through.

        Every finetuned checkpoint's action statistics must agree with the node's action kind too: a joint-position
        finetune merged into a velocity policy is refused.
        """
        source, record = statistics_source(request.base, list(request.finetuned), self.stats,
                                           "the lerobot_stats parameter (base | finetuned)")
        kind = getattr(self.io_mapping, "action", None)
        if record is not None and kind is not None:
            for finetuned in request.finetuned:
                if processor_files(finetuned):
                    check_action_kind(read_stats(finetuned), kind, f"finetuned checkpoint {finetuned}")
        return source, record

    def _load(self, checkpoint: str, processors_from: Path) -> Policy:
        extra = {} if processors_from == Path(checkpoint) else {"processors_from": processors_from}
        if self.dtype:
            extra["dtype"] = self.dtype
        return load_policy(checkpoint, device=self.device, seed=self.seed, io_mapping=self.io_mapping, **extra)

    def _plan(self, request: MergeRequest) -> MergePlan | None:
        """Open and check the request's checkpoints, preset, alphas and layout from the headers (None: base alone).

        Raises:
            ConfigError: what retain-merge reports, an unknown group alpha or layout; nothing was freed or loaded.
        """
        if not request.finetuned:
            return None
        plan = plan_merge(request.base, list(request.finetuned), AlphaSpec.uniform(0.0), request.preset)
        try:
            request.alpha_spec().resolve(plan.preset.groups, len(plan.finetuned))
            check_layout(request.layout)
        except BaseException:
            plan.close()
            raise
        return plan

    def _new_merger(self, plan: MergePlan, request: MergeRequest, policy: Policy) -> LiveMerger:
        """A live merger of `plan` (which it then owns) for a model like `policy`."""
        copy_bytes = model_bytes({name: [tensor] for name, tensor in policy.named_parameters()})
        return LiveMerger(plan, request.layout, self.device, model_bytes=copy_bytes)

    def _free_spares(self) -> None:
        """Free what a reload replaces anyway before it allocates anew.

        That is the standby copy, and the merger's inputs where it holds them (resident or pinned). A merger that
        reads the files holds nothing worth freeing and stays, so a failed reload leaves alpha changes as they were.
        """
        if self._serving is not None:
            self._serving.policy.release_standby()
        with self._cond:
            self._forget_spares()
        self._standby_of, self._hasher = None, None
        if self._merger is not None and self._merger.holds_inputs:
            self._merger.close()
            self._merger = None
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _wait_for_retired(self, timeout_s: float = 10.0) -> None:
        """Wait until the model a reload replaced is freed, so that a new copy is not a third one.

        The last chunk computed with it lets go of it; if it stays, reference cycles are collected once.
        """
        deadline, collected = time.monotonic() + timeout_s, False
        while self._retired() is not None and time.monotonic() < deadline and not self._stop.is_set():
            if not collected and time.monotonic() > deadline - timeout_s + 1.0:
                collect_cycles()
                collected = True
            time.sleep(0.01)
        if self._retired() is not None:
            log.warning("the model a reload replaced is still referenced after %.0f s; allocating anyway", timeout_s)

    def _build(self, request: MergeRequest, first: bool = False) -> ServingModel | None:
        """Build a complete model for `request` (None: the serving copy has it).

        Two copies: the serving copy is not touched. One copy: merged into it with the arm held (`_build_in_place`).
        """
        started = time.perf_counter()
        serving = self._serving
        if first or serving is None or request.reload or request.files_key() != serving.request.files_key():
            return self._build_reload(request, started)
        policy = serving.policy
        if not request.finetuned:  # the base alone: same weights, new request
            self.counts["builds"] += 1
            return ServingModel(policy, self._base_id, {}, request, build_s=time.perf_counter() - started,
                                statistics=serving.statistics)
        if self._merger is None:  # a failed reload freed it: the serving files again, next to the serving model
            self._merger = self._new_merger(self._plan(request), request, policy)
        with self._cond:
            hit = self._lookup(request)
            if hit is not None:
                return hit if hit.promote else None
            if self._in_place:
                slot = ""
            else:
                slot = self._claim_slot()
        if not slot:
            return self._build_in_place(request, serving, started)
        try:
            if self._standby_of is not policy:
                self._wait_for_retired()
            targets = policy.weight_targets(slot)
            self._standby_of = policy
            done = self._merger.merge_into(request.alpha_spec(), targets)
        except BaseException:
            with self._cond:  # what the spare copy holds now is nothing: free to merge into again
                self._busy.discard(slot)
            raise
        self.counts["builds"] += 1
        return ServingModel(policy, done.weights_id, done.alphas, request, merge_s=done.seconds,
                            build_s=time.perf_counter() - started, promote=True, memory=self._merger.memory, slot=slot,
                            statistics=serving.statistics)

    def _build_in_place(self, request: MergeRequest, serving: ServingModel, started: float) -> ServingModel:
        """Merge `request` into the serving copy while the arm is held (module docstring: one copy).

        Raises:
            ConfigError: the merge failed and the serving weights were restored (the arm is released), or could not
                be (the arm stays held).
        """
        policy, merger = serving.policy, self._merger
        merger.resolve(request.alpha_spec())  # a bad alpha is refused before the arm is held
        self._hold_arm(f"merging alphas {request.describe()} into the serving weights ({self._in_place})")
        with self.weights_lock:  # a predict that started before the hold has returned
            targets = policy.weight_targets("serving")
            try:
                done = merger.merge_into(request.alpha_spec(), targets)
            except Exception as exc:
                broken = self._restore(policy, serving, exc)
                if broken:
                    raise ConfigError(broken) from exc
                raise
        self.counts["builds"] += 1
        return ServingModel(policy, done.weights_id, done.alphas, request, merge_s=done.seconds,
                            build_s=time.perf_counter() - started, memory=merger.memory,
                            statistics=serving.statistics, in_place=True)

    def _hold_arm(self, reason: str) -> None:
        with self._cond:
            self._hold = reason
        if self.on_hold is not None:
            self.on_hold(reason)

    def _restore(self, policy: Policy, serving: ServingModel, exc: Exception) -> str:
        """After a failed in-place merge (caller holds `weights_lock`): merge the serving recipe again, release the arm.

        Returns '' or, when that fails too (the weights are a mix and the arm stays held), why.
        """
        with self._cond:  # whatever was hashed of these weights may be stale
            self._hasher, self._content = None, (0, "")
        try:
            self._merger.merge_into(serving.request.alpha_spec(), policy.weight_targets("serving"))
        except Exception as again:  # noqa: BLE001  (reported; nothing is commanded from these weights again)
            with self._cond:
                self._hold = (f"the serving weights are broken: an in-place merge failed ({exc}) and restoring "
                              f"alphas {serving.request.describe()} failed too ({again}); nothing is commanded "
                              "until an alpha change merges completely. Fix: call ~/reload")
            log.error("%s", self._hold)
            return self._hold
        with self._cond:
            self._hold = ""
        return ""

    def _choose_copies(self, merger: LiveMerger) -> str:
        """Why alpha changes will merge in place ('' = into a spare copy): `swap_mode`, then room for a second copy."""
        if self.swap_mode == "in_place":
            return "swap_mode in_place"
        if self.swap_mode == "standby":
            return ""
        size = merger.memory.model_bytes
        replaced = size if self._serving is not None else 0  # a reload's old copy is freed once it is swapped out
        return copies_reason(size, free_memory_bytes(self.device) + replaced)

    def _build_reload(self, request: MergeRequest, started: float) -> ServingModel:
        """Load `request.base` as a new policy and merge into it; the serving model keeps serving meanwhile."""
        serving = self._serving
        plan = self._plan(request)  # a bad file, preset or alpha fails here, before anything is freed
        merger = None
        try:
            source, statistics = self._statistics(request)  # refused statistics keep the recipe cache too
            self._free_spares()
            self._wait_for_retired()
            policy = self._load(request.base, source)
            load_s = time.perf_counter() - started
            if serving is not None:
                why = same_architecture(policy, serving.policy)
                if why is not None:
                    raise ConfigError(f"checkpoint {request.base} has a different architecture than the serving "
                                      f"model: {why}. Fix: use a checkpoint of the same model")
            targets = policy.weight_targets("serving")  # nobody runs this policy yet
            if plan is not None:
                merger, plan = self._new_merger(plan, request, policy), None
                done = merger.merge_into(request.alpha_spec(), targets)
                merge_s, alphas, weights_id = done.seconds, done.alphas, done.weights_id
            else:
                merge_s, alphas, weights_id = 0.0, {}, base_recipe_id(request.base)
        except BaseException:
            if plan is not None:
                plan.close()
            if merger is not None:
                merger.close()
            raise
        if self._merger is not None:  # commit: the old merger (if kept) goes, the new one serves the next changes
            self._merger.close()
        self._merger, self._base_id = merger, weights_id
        in_place = self._choose_copies(merger) if merger is not None else ""
        with self._cond:
            self._in_place = in_place
        self._groups = tuple(merger.groups) if merger is not None else ()
        self.counts["builds"] += 1
        generation = 1 if serving is None else serving.generation + 1
        return ServingModel(policy, weights_id, alphas, request, generation, merge_s, load_s,
                            time.perf_counter() - started, memory=merger.memory if merger is not None else None,
                            statistics=statistics)


def copies_reason(copy_bytes: int, free_bytes: int) -> str:
    """swap_mode auto: why one copy ('' when a second copy and `_SPARE_HEADROOM_BYTES` fit in `free_bytes`)."""
    if free_bytes >= copy_bytes + _SPARE_HEADROOM_BYTES:
        return ""
    return (f"two copies do not fit: a copy is {copy_bytes / 1e9:.2f} GB and {free_bytes / 1e9:.2f} GB are free "
            f"(with {_SPARE_HEADROOM_BYTES / 1e9:.1f} GB kept free)")


def collect_cycles() -> None:
    """Collect reference cycles, also among the objects `gc.freeze()` set aside; what survives is frozen again.

    The node freezes its startup objects, a model a reload later replaces among them.
    """
    frozen = gc.get_freeze_count() > 0
    if frozen:
        gc.unfreeze()
    gc.collect()
    if frozen:
        gc.freeze()
