"""Live re-merge for the policy node: parameter changes -> new weights -> one-step swap between chunks (no ROS).

Threads and ownership:
- the caller (the node's parameter callback or a service) calls `request()`: it only stores the wish and wakes the
  worker, so a burst of changes coalesces and the last one wins;
- the merge worker thread writes the next weights *completely* into the policy's standby copy, which nobody runs
  (`LiveMerger.merge_into`; the inputs resident on the device or streamed to it, see `merge/live.py`), and parks the
  result in `_ready`. Its identity is the recipe's (input digests, alphas, preset, mode, engine version), known without
  reading the weights;
- the control thread calls `take_swap()` between two chunks: `promote_standby` (a reference swap) makes the new copy
  serve. The chunk that ran before kept its copy to the end, so every chunk comes from exactly one merge, and the
  identity reported with a chunk is that of the weights that computed it. Nothing is copied on the control thread.
- when idle, the worker may hash the serving weights (`content_hash`), in steps it interrupts for a new request.
Memory: the serving copy, the standby copy and, with the resident layout, the inputs. A reload (new files) first frees
the standby copy and the old inputs, then loads the new policy next to the serving one and merges into it before it
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
from dataclasses import dataclass, field, replace

from retain_ros.errors import ConfigError
from retain_ros.merge.live import (AUTO_LAYOUT, LiveMerger, MemoryPlan, check_layout, lower_thread_priority,
                                   model_bytes)
from retain_ros.merge.maths import AlphaSpec, ContentHasher
from retain_ros.merge.plan import MergePlan, plan_merge
from retain_ros.merge.recipe import base_recipe_id
from retain_ros.policy.interface import Policy, load_policy
from retain_ros.ros.worker_thread import WorkerThread

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
        layout: where the merge inputs live: 'auto', 'resident' or 'streamed' (`merge.live.plan_memory`).
    """

    base: str
    finetuned: tuple[str, ...] = ()
    alpha: float = 0.0
    group_alpha: dict[str, float] = field(default_factory=dict)
    preset: str = "auto"
    reload: bool = False
    layout: str = AUTO_LAYOUT

    def files_key(self) -> tuple:
        """What decides whether the files must be read again."""
        return (self.base, self.finetuned, self.preset, self.layout)

    def alpha_spec(self) -> AlphaSpec:
        """The merge weights as an AlphaSpec."""
        return AlphaSpec.uniform(self.alpha, **self.group_alpha)


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
        promote: the swap promotes the policy's standby copy (an alpha change); False: `policy` is a new object.
        memory: the merge layout and its memory accounting (None when the base serves alone).
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
    """

    def __init__(self, device: str = "cpu", seed: int = 0, io_mapping: object | None = None,
                 content_hash: bool = False) -> None:
        self.device = device
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
        self._retired: weakref.ref = lambda: None  # the policy a reload replaced, until it is freed
        self._content: tuple[int, str] = (0, "")
        self.counts = {"requests": 0, "builds": 0, "failures": 0, "swaps": 0}
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
        collect_cycles()
        return stopped

    def request(self, request: MergeRequest) -> int:
        """Ask for a new model; returns the request id. Never blocks on a merge."""
        with self._cond:
            self._wanted_id += 1
            self._wanted = request
            self._wanted_at = time.perf_counter()
            self.counts["requests"] += 1
            self._cond.notify_all()
            return self._wanted_id

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
    def groups(self) -> tuple[str, ...]:
        """The parameter groups of the serving model's preset (empty before the first merge or without finetuned)."""
        return self._groups

    def take_swap(self) -> ServingModel | None:
        """Control thread, between chunks: make a ready model serve. Returns it, or None when nothing was ready.

        An alpha change promotes the policy's standby copy (a reference swap); a reload replaces the policy object.
        Either way nothing is copied here.
        """
        with self._cond:
            ready = self._ready
            if ready is None:
                return None
            started = time.perf_counter()
            self._ready = None
            old_policy = self._serving.policy
            if ready.promote:
                try:
                    ready.policy.promote_standby()
                except Exception as exc:  # noqa: BLE001  (the policy keeps its serving copy; keep serving it)
                    self._failed(f"swap refused, old model kept: {exc}")
                    self._cond.notify_all()
                    return None
            if old_policy is not ready.policy:  # a reload: the old model is freed once the last chunk lets go of it
                self._retired, self._hasher = weakref.ref(old_policy), None
            self._serving = ready
            self.swap_s = time.perf_counter() - started
            self.counts["swaps"] += 1
            self._cond.notify_all()
            return ready

    def idle(self) -> bool:
        """True when no request is waiting, building or waiting to be swapped in."""
        with self._cond:
            return self._ready is None and self._done_id == self._wanted_id

    def memory(self) -> dict:
        """The merge layout and its memory accounting (GB), for the status."""
        serving = self._serving
        plan = serving.memory if serving is not None else None
        if plan is None:
            return {}
        return {"layout": plan.layout, "reason": plan.reason, "model_gb": round(plan.model_bytes / 1e9, 4),
                "device_gb": round(plan.device_bytes / 1e9, 4), "host_gb": round(plan.host_bytes / 1e9, 4)}

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
            if policy is not None:
                self._prepare_standby(policy, current)
                policy = current = None  # no reference of this thread keeps a replaced model alive
                continue
            if hashing:
                self._hash_step()
                continue
            try:
                model = self._build(request)
                model = replace(model, request_to_ready_s=time.perf_counter() - asked_at, requested_at=asked_at)
                with self._cond:
                    self._ready = model
                    self.last_error = ""
                    self.last_event = (f"model for alphas {model.alphas} ready in {model.build_s:.3f} s "
                                       f"(weights {model.weights_id[:12]})")
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

    def _prepare_standby(self, policy: Policy, current: MergeRequest) -> None:
        """Make the standby copy and merge the serving alphas into it once, right after a start or a reload.

        Then the first alpha change neither waits for the copy's memory nor pays the first pass over the inputs
        (measured on CPU: reading page-cache pages the second time costs ~1.6x later passes, the kernel promoting
        them to its active list). A failure here (e.g. out of memory) is logged; the next alpha change tries again
        and reports it.
        """
        try:
            targets = policy.weight_targets("standby")
            self._merger.merge_into(current.alpha_spec(), targets)
        except Exception as exc:  # noqa: BLE001  (the worker must survive; a request reports a lasting problem)
            # the message only: a log handler keeping the exception would keep its frames and this model alive
            log.warning("could not prepare the standby copy now (%s); the next alpha change makes it", str(exc))
        self._standby_of = policy

    def _standby_missing(self) -> bool:
        """Whether the serving policy has no standby copy yet while there are merges to come (caller holds `_cond`)."""
        serving = self._serving
        return serving is not None and self._merger is not None and self._standby_of is not serving.policy

    def _hash_job(self) -> bool:
        """Whether the serving weights still need hashing; prepares the hasher (caller holds `_cond`)."""
        serving = self._serving
        if (not self.content_hash or serving is None or self._ready is not None
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

    def _load(self, checkpoint: str) -> Policy:
        return load_policy(checkpoint, device=self.device, seed=self.seed, io_mapping=self.io_mapping)

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

    def _build(self, request: MergeRequest, first: bool = False) -> ServingModel:
        """Build a complete model for `request` without touching the serving copy."""
        started = time.perf_counter()
        serving = self._serving
        if first or serving is None or request.reload or request.files_key() != serving.request.files_key():
            return self._build_reload(request, started)
        policy = serving.policy
        generation = serving.generation + 1
        self.counts["builds"] += 1
        if not request.finetuned:  # the base alone: same weights, new request
            return ServingModel(policy, self._base_id, {}, request, generation,
                                build_s=time.perf_counter() - started)
        if self._merger is None:  # a failed reload freed it: the serving files again, next to the serving model
            self._merger = self._new_merger(self._plan(request), request, policy)
        if self._standby_of is not policy:
            self._wait_for_retired()
        targets = policy.weight_targets("standby")
        self._standby_of = policy
        done = self._merger.merge_into(request.alpha_spec(), targets)
        return ServingModel(policy, done.weights_id, done.alphas, request, generation, done.seconds,
                            build_s=time.perf_counter() - started, promote=True, memory=self._merger.memory)

    def _build_reload(self, request: MergeRequest, started: float) -> ServingModel:
        """Load `request.base` as a new policy and merge into it; the serving model keeps serving meanwhile."""
        serving = self._serving
        plan = self._plan(request)  # a bad file, preset or alpha fails here, before anything is freed
        merger = None
        try:
            self._free_spares()
            self._wait_for_retired()
            policy = self._load(request.base)
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
        self._groups = tuple(merger.groups) if merger is not None else ()
        self.counts["builds"] += 1
        generation = 1 if serving is None else serving.generation + 1
        return ServingModel(policy, weights_id, alphas, request, generation, merge_s, load_s,
                            time.perf_counter() - started, memory=merger.memory if merger is not None else None)


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
