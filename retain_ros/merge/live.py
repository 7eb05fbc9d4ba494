"""Re-merge for new alphas straight into a model's weight tensors, with the inputs kept where memory allows.

Where theta_pre and the finetuned weights live between two merges (the `layout`):
- resident: on the merge device, in flat buffers (`ResidentMerger`). A new alpha is one pass over device memory.
  Device memory: the inputs plus the model's two copies (the serving one and the standby one the merge writes).
- streamed: not on the device. On CPU the files are read again at every merge, block by block, from the OS page cache
  (pread into a few MB of buffers: none of it counts in the process's memory; a file evicted from the cache is read
  from disk, at disk speed). On CUDA they sit in pinned host memory and are copied to the device block by block.
  Device memory: the model's two copies.
Both write each element once into the target tensors, with the arithmetic of `retain-merge` (`combine` on the stored
dtype, then cast into the target's dtype), so the result is bit-identical to merging to disk and loading the file.
The identity of the result is the recipe's (`recipe.py`), known before the merge starts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from retain_ros.errors import ConfigError
from retain_ros.merge.groups import AUTO
from retain_ros.merge.maths import SEQUENTIAL, AlphaSpec, as_alpha_spec, coefficients, combine, copied_input
from retain_ros.merge.plan import MergePlan, plan_merge
from retain_ros.merge.recipe import assignment_digest, file_digests, recipe_id
from retain_ros.merge.resident import ResidentMerger

AUTO_LAYOUT, RESIDENT, STREAMED = "auto", "resident", "streamed"
LAYOUTS = (AUTO_LAYOUT, RESIDENT, STREAMED)
BLOCK_ELEMENTS = 1 << 20  # per input and block; measured fastest on CPU (4 MB of fp32 stays in cache for the lerp)
_HEADROOM_BYTES = 2 << 30  # left free on a GPU for inference activations when choosing the resident layout


def lower_thread_priority(increment: int = 10) -> None:
    """Make the calling thread background work for the OS scheduler (Linux: nice is per thread).

    A control loop thread then gets a core first while merges run. Best effort: no change where the OS refuses.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError):
        pass


def free_memory_bytes(device: str | torch.device) -> int:
    """Memory that can still be allocated on `device`: CUDA's free memory, or the kernel's MemAvailable on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class MemoryPlan:
    """Where a live merge keeps what, in bytes.

    Attributes:
        layout: 'resident' or 'streamed'.
        model_bytes: one copy of the model's weights (in the model's dtypes).
        input_bytes: the checkpoints' weights (base + finetuned, as stored).
        device_bytes: what the layout keeps on the device: serving + standby copies, plus the inputs when resident.
        host_bytes: pinned host memory (the inputs, streamed to a CUDA device).
        reason: why this layout (for the log and the status).
    """

    layout: str
    model_bytes: int
    input_bytes: int
    device_bytes: int
    host_bytes: int
    reason: str


def check_layout(layout: str) -> None:
    """Raises ConfigError (naming the choices) unless `layout` is one of `LAYOUTS`."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown merge_layout '{layout}'; choose one of: {', '.join(LAYOUTS)}")


def plan_memory(layout: str, model_bytes: int, input_bytes: int, device: str | torch.device,
                free_bytes: int | None = None) -> MemoryPlan:
    """Resolve `layout` ('auto' chooses from the device's free memory) and account for its memory.

    Args:
        layout: 'auto', 'resident' or 'streamed'.
        model_bytes: one copy of the model's weights; input_bytes: all input checkpoints together.
        device: the merge (and inference) device.
        free_bytes: free device memory now, with the serving model loaded (default: measured).

    Raises:
        ConfigError: unknown layout.
    """
    check_layout(layout)
    device = torch.device(device)

    def make(chosen: str, reason: str) -> MemoryPlan:
        resident = input_bytes if chosen == RESIDENT else 0
        host = input_bytes if chosen == STREAMED and device.type != "cpu" else 0
        return MemoryPlan(chosen, model_bytes, input_bytes, 2 * model_bytes + resident, host, reason)

    if layout != AUTO_LAYOUT:
        return make(layout, "set by merge_layout")
    if device.type == "cpu":
        return make(STREAMED, "on CPU the page cache already holds the checkpoint files; resident copies would double "
                              "the memory for a merge about 2x faster")
    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    need = input_bytes + model_bytes  # the inputs and the standby copy, next to the serving model
    if need <= free - _HEADROOM_BYTES:
        return make(RESIDENT, f"{need / 1e9:.1f} GB of inputs and standby copy fit in {free / 1e9:.1f} GB free")
    return make(STREAMED, f"{need / 1e9:.1f} GB of inputs and standby copy do not fit in {free / 1e9:.1f} GB free "
                          f"(with {_HEADROOM_BYTES / 2**30:.0f} GiB left for inference)")


@dataclass(frozen=True)
class LiveMerge:
    """The outcome of one `merge_into`: the resolved alphas, the recipe identity and the time it took."""

    alphas: dict[str, tuple[float, ...]]
    weights_id: str
    seconds: float


class LiveMerger:
    """Merges any alphas of one base and its finetuned checkpoints into given weight tensors.

    Args:
        plan: a validated plan; the merger owns it from here (it closes the files when it no longer reads them).
        layout: 'auto', 'resident' or 'streamed' (see the module docstring and `plan_memory`).
        device: where the targets live and the arithmetic runs.
        block_elements: elements per input and block when streaming.
        model_bytes: one copy of the model's weights, for the memory accounting (default: as stored).
        threads: CPU threads that merge blocks in parallel (default on CPU: one per core, at most 4; they run at a
            lower OS priority than the control thread (`lower_thread_priority`) and release the GIL in reads and
            arithmetic; 1 on CUDA, where one stream does the work).
    """

    def __init__(self, plan: MergePlan, layout: str = AUTO_LAYOUT, device: str | torch.device = "cpu",
                 block_elements: int = BLOCK_ELEMENTS, model_bytes: int | None = None, threads: int | None = None):
        self.device = torch.device(device)
        self.threads = threads or (min(4, os.cpu_count() or 1) if self.device.type == "cpu" else 1)
        self.mode = plan.mode
        self.groups = plan.preset.groups
        self.preset_name = plan.preset.name
        self.num_finetuned = len(plan.finetuned)
        self.warnings = list(plan.warnings)
        self._specs = dict(plan.base.specs)
        # no block buffer larger than the largest tensor (a small model needs no 4 MB buffers)
        self.block_elements = max(1, min(int(block_elements), max((s.numel for s in self._specs.values()), default=1)))
        stored = sum(s.numel * s.dtype.itemsize for s in self._specs.values())
        self.input_bytes = stored * len(plan.inputs)
        self.memory = plan_memory(layout, stored if model_bytes is None else model_bytes, self.input_bytes,
                                  self.device)
        layout = self.layout = self.memory.layout
        primary = {n: names[0] for names in plan.tied for n in names[1:]}
        # a tied alias is merged like its primary (same inputs, the primary's group), as retain-merge writes it
        self._group_of = {n: plan.assignment.group_of.get(primary.get(n, n)) if s.is_float else None
                          for n, s in self._specs.items()}
        self._assignment = assignment_digest(plan.assignment.group_of)
        self._stamps = {f: s for c in plan.inputs for f, s in c.file_stamps().items()}
        self.digests = file_digests(plan.inputs)
        self._check_paths_unchanged()
        self._resident: ResidentMerger | None = None
        self._checkpoints = []
        self._staging: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}
        self._pool: ThreadPoolExecutor | None = None
        if layout == RESIDENT:
            self._resident = ResidentMerger(plan, self.device)
        elif self.device.type != "cpu":  # streamed to a GPU: the inputs wait in pinned host memory
            self._resident = ResidentMerger(plan, "cpu", pin_memory=True)
        self._checkpoints = list(plan.inputs)
        self._check_files_unchanged()  # the bytes just copied (or to be read) are those that were hashed
        if self._resident is not None:
            plan.close()  # copied: the files are not read again
            self._checkpoints = []

    @classmethod
    def from_checkpoints(cls, base: str, finetuned: Sequence[str], groups: str = AUTO, layout: str = AUTO_LAYOUT,
                         device: str | torch.device = "cpu", mode: str = SEQUENTIAL,
                         block_elements: int = BLOCK_ELEMENTS, model_bytes: int | None = None,
                         threads: int | None = None) -> LiveMerger:
        """Validate the checkpoints (as retain-merge does) and prepare the layout.

        Raises:
            ConfigError: the problems retain-merge reports (paths, keys, shapes, dtypes, groups).
        """
        plan = plan_merge(base, finetuned, AlphaSpec.uniform(0.0), groups, mode)
        try:
            return cls(plan, layout, device, block_elements, model_bytes, threads)
        except BaseException:
            plan.close()
            raise

    # ------------------------------------------------------------------------------------------------- queries
    @property
    def holds_inputs(self) -> bool:
        """Whether this merger keeps copies of the inputs in memory (resident, or pinned for a GPU)."""
        return self._resident is not None

    @property
    def names(self) -> list[str]:
        """Every tensor the merge writes, in file order."""
        return list(self._specs)

    def resolve(self, alpha: AlphaSpec | float | Mapping[str, float]) -> dict[str, tuple[float, ...]]:
        """Check alphas and expand them per group (as `ResidentMerger.resolve`).

        Raises:
            ConfigError: alpha not in [0, 1], unknown group, wrong number of values.
        """
        return as_alpha_spec(alpha).resolve(self.groups, self.num_finetuned)

    def recipe_id(self, alphas: Mapping[str, Sequence[float]]) -> str:
        """Identity of the weights these inputs give at resolved `alphas`."""
        return recipe_id(self.digests, alphas, self.mode, self.preset_name, self._assignment, self.device.type)

    def check_targets(self, targets: Mapping[str, Sequence[torch.Tensor]]) -> None:
        """Check that `targets` has every tensor of the checkpoints, with their shapes.

        Raises:
            ConfigError: missing or extra names, a wrong shape, or a floating tensor where an integer one is stored.
        """
        missing = [n for n in self._specs if n not in targets]
        extra = [n for n in targets if n not in self._specs]
        if missing or extra:
            raise ConfigError(f"the model's weights do not match the checkpoints: {len(missing)} missing (e.g. "
                              f"{missing[:3]}), {len(extra)} not in the checkpoints (e.g. {extra[:3]}). Fix: serve a "
                              "model of the checkpoints' architecture")
        for name, spec in self._specs.items():
            for target in targets[name]:
                if tuple(target.shape) != spec.shape or target.dtype.is_floating_point != spec.is_float:
                    raise ConfigError(f"weight '{name}' is {list(target.shape)} {target.dtype} in the model but "
                                      f"{list(spec.shape)} {spec.dtype} in the checkpoints; wrong architecture")

    # --------------------------------------------------------------------------------------------------- merge
    def merge_into(self, alpha: AlphaSpec | float | Mapping[str, float],
                   targets: Mapping[str, Sequence[torch.Tensor]]) -> LiveMerge:
        """Write the merged weights for `alpha` into `targets` (name -> the tensors that hold that weight).

        The targets must be a copy nobody runs while this writes. On an error some targets may hold new values and
        some old: do not serve them.

        Raises:
            ConfigError: bad alphas or targets (before anything is written), or an input file that changed on disk.
        """
        alphas = self.resolve(alpha)
        self.check_targets(targets)
        started = time.perf_counter()
        self._check_files_unchanged()
        with torch.no_grad():
            blocks, finish = [], []
            for name, spec in self._specs.items():
                self._plan_tensor(name, spec.numel, alphas, targets[name], blocks, finish)
            if self.threads > 1 and len(blocks) > 1:
                if self._pool is None:  # kept: its threads' block buffers are reused by the next merge
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="retain_merge",
                                                    initializer=lower_thread_priority)
                # one task per thread over a contiguous run of blocks: few hand-offs, so the threads that hold the
                # GIL between blocks rarely make a control thread wait for it
                per = -(-len(blocks) // self.threads)
                futures = [self._pool.submit(self._merge_blocks, blocks[i:i + per])
                           for i in range(0, len(blocks), per)]
                wait(futures)  # all of them, also after an error: none may still write when this returns
                for future in futures:
                    future.result()
            else:
                self._merge_blocks(blocks)
            for step in finish:
                step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._check_files_unchanged()  # a rewrite during the merge: its bytes may be mixed
        return LiveMerge(alphas, self.recipe_id(alphas), time.perf_counter() - started)

    def _plan_tensor(self, name: str, numel: int, alphas: dict[str, tuple[float, ...]],
                     dests: Sequence[torch.Tensor], blocks: list, finish: list) -> None:
        """Append the blocks of one tensor and what completes it once they are done.

        A block is (name, inputs, coefficients, output view, first element); completing is copying into a
        non-contiguous target and into tied copies.
        """
        group = self._group_of[name]
        coeffs: tuple[float, ...] = (1.0,) if group is None else coefficients(alphas[group], self.mode)
        chosen = 0 if group is None else copied_input(coeffs)
        which = list(range(len(coeffs))) if chosen is None else [chosen]
        used = [coeffs[i] for i in which] if chosen is None else [1.0]
        dst = dests[0]
        flat = dst.view(-1) if dst.is_contiguous() else torch.empty(numel, dtype=dst.dtype, device=dst.device)
        size = numel if self.layout == RESIDENT else self.block_elements
        for start in range(0, numel, max(1, size)):
            blocks.append((name, which, used, flat[start:start + min(size, numel - start)], start))
        if not dst.is_contiguous():
            finish.append(lambda: dst.copy_(flat.view(dst.shape)))
        for other in dests[1:]:
            if other.data_ptr() != dst.data_ptr():
                finish.append(lambda other=other: other.copy_(dst))

    def _merge_blocks(self, blocks: list[tuple]) -> None:
        with torch.no_grad():
            for name, which, used, out, start in blocks:
                parts = self._read(which, name, start, out.numel())
                if out.dtype == parts[0].dtype:
                    combine(parts, used, out=out)
                else:  # merged in the stored dtype, then cast: what loading the merged file into this model does
                    out.copy_(combine(parts, used))

    def _read(self, which: list[int], name: str, start: int, count: int) -> list[torch.Tensor]:
        """Elements [start, start + count) of one tensor in the inputs `which`, on the merge device."""
        if self._resident is not None:
            views = self._resident.input_views(name)
            parts = [views[i][start:start + count] for i in which]
            if self.layout == RESIDENT:
                return parts
            return [self._stage(i, p).copy_(p, non_blocking=True) for i, p in zip(which, parts)]
        dtype = self._specs[name].dtype
        return [self._checkpoints[i].read(name, start, count, out=self._buffer(i, dtype, "cpu")) for i in which]

    def _stage(self, index: int, part: torch.Tensor) -> torch.Tensor:
        return self._buffer(index, part.dtype, self.device)[:part.numel()]

    def _buffer(self, index: int, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
        """This thread's block buffer for one input and dtype."""
        key = (threading.get_ident(), index, dtype)
        if key not in self._staging:
            self._staging[key] = torch.empty(self.block_elements, dtype=dtype, device=device)
        return self._staging[key]

    # ------------------------------------------------------------------------------------------------- checks
    def _check_paths_unchanged(self) -> None:
        """The paths still name the files that were opened and hashed (none replaced or rewritten meanwhile)."""
        for file, stamp in self._stamps.items():
            st = Path(file).stat()
            if (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) != stamp:
                raise ConfigError(f"{file} changed while it was being loaded; wait until it is completely written, "
                                  "then reload")

    def _check_files_unchanged(self) -> None:
        """The open input files still hold what was hashed.

        Checked after loading, and around every merge that reads them again (the streamed CPU layout).
        """
        for checkpoint in self._checkpoints:
            for file, stamp in checkpoint.file_stamps().items():
                if stamp != self._stamps[file]:
                    raise ConfigError(f"{file} was rewritten on disk after it was loaded (size or modification time "
                                      "changed), so a merge could mix old and new bytes; the serving model is kept. "
                                      "Fix: call ~/reload to load the new file")

    def close(self) -> None:
        """Release the open files and the inputs' memory."""
        for checkpoint in self._checkpoints:
            checkpoint.close()
        self._checkpoints = []
        self._resident = None
        self._staging.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def model_bytes(targets: Mapping[str, Sequence[torch.Tensor]]) -> int:
    """Bytes of one copy of a model's weights (tied tensors counted once)."""
    seen, total = set(), 0
    for tensors in targets.values():
        for t in tensors:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total
