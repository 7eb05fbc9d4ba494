"""The disk merge: stream every tensor through the merge maths into a new checkpoint directory, in bounded memory.

Peak memory is a few chunks of `chunk_elements` elements per input, independent of model and tensor size. The output
is written into a hidden temporary directory beside `out` and renamed into place at the end, so an interrupted merge
never leaves anything that looks like a checkpoint; the temporary directory is removed on any error or Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from retain_ros.errors import ConfigError
from retain_ros.merge import provenance
from retain_ros.merge.checkpoint import INDEX_NAME, SINGLE_NAME, Checkpoint
from retain_ros.merge.hashing import DigestCache, InOrderFileHasher, sha256_file
from retain_ros.merge.maths import combine
from retain_ros.merge.plan import MergePlan
from retain_ros.merge.safetensors_io import StreamingSafetensorsWriter, dtype_code

log = logging.getLogger(__name__)
CHUNK_ELEMENTS = 1 << 22  # 4M elements: 8 MB of bf16, large enough that per-chunk overhead is negligible


@dataclass
class MergeResult:
    """What a disk merge produced."""

    out: Path
    files: list[Path]
    bytes_written: int
    seconds: float
    record: dict


class _HashingReader:
    """Reads chunks of one checkpoint into two alternating buffers and feeds the bytes to the file hashers."""

    def __init__(self, checkpoint: Checkpoint, pool: ThreadPoolExecutor, chunk_elements: int,
                 cache: DigestCache | None):
        self.checkpoint = checkpoint
        self.chunk_elements = chunk_elements
        self._buffers: list[dict[torch.dtype, torch.Tensor]] = [{}, {}]
        self._pending: list[list[Future]] = [[], []]
        self._slot = 0
        cached = {f: cache.get(f) for f in checkpoint.files} if cache is not None else {}
        self.cached = {f: d for f, d in cached.items() if d is not None}
        if len(self.cached) == len(checkpoint.files):
            self._hashers, self._whole_file = {}, {}
        elif not checkpoint.is_safetensors:
            self._hashers = {}
            self._whole_file = {f: pool.submit(sha256_file, f) for f in checkpoint.files}
        else:
            self._whole_file = {}
            self._hashers = {f: InOrderFileHasher(f, pool) for f in checkpoint.files}
            for f, hasher in self._hashers.items():
                header = checkpoint.headers[f]
                with open(f, "rb") as fh:
                    self._pending[0] += hasher.feed(0, fh.read(header.data_start))

    def read(self, name: str, start: int, count: int) -> torch.Tensor:
        self._slot ^= 1
        for future in self._pending[self._slot]:
            future.result()  # the hasher is done with this buffer
        self._pending[self._slot] = []
        dtype = self.checkpoint.specs[name].dtype
        buffers = self._buffers[self._slot]
        if dtype not in buffers:
            buffers[dtype] = torch.empty(self.chunk_elements, dtype=dtype)
        chunk = self.checkpoint.read(name, start, count, out=buffers[dtype])
        location = self.checkpoint.locate(name, start, count) if self._hashers else None
        if location is not None and count:
            file, offset, _ = location
            self._pending[self._slot] += self._hashers[file].feed(offset, chunk.view(torch.uint8).numpy())
        return chunk

    def digests(self) -> dict[Path, str]:
        result = dict(self.cached)
        result.update({f: h.hexdigest() for f, h in self._hashers.items()})
        result.update({f: fut.result() for f, fut in self._whole_file.items()})
        return result


@contextmanager
def single_threaded_torch():
    """Run torch ops on one thread: the chunks are memory-bound, and other cores serve the hash and write workers."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def output_layout(base: Checkpoint) -> dict[str, list[str]]:
    """Output file name -> tensor names in write order: the base's sharding, or one model.safetensors."""
    if base.kind == "sharded":
        layout: dict[str, list[str]] = {}
        for name, spec in base.specs.items():
            layout.setdefault(spec.file.name, []).append(name)
        return layout
    return {SINGLE_NAME: list(base.specs)}


def merge_to_disk(plan: MergePlan, out: str | os.PathLike, force: bool = False,
                  progress: Callable[[int], None] | None = None,
                  chunk_elements: int = CHUNK_ELEMENTS, hash_cache: bool = True) -> MergeResult:
    """Write the merged checkpoint described by `plan` to the directory `out`.

    Args:
        plan: a validated plan (see plan_merge).
        out: output directory; must not exist unless `force`.
        force: replace an existing output (only after the new one is complete).
        progress: called with the number of output bytes written since the last call.
        chunk_elements: elements per processing chunk (bounds memory).
        hash_cache: reuse input sha256 digests remembered from earlier merges of unchanged files.

    Raises:
        ConfigError: the output exists (without force), is an input, or the disk is too small.
    """
    started = time.perf_counter()
    out = Path(out)
    if plan.base.kind == "orbax":
        return _merge_orbax(plan, out, force, progress, hash_cache, started)
    layout = output_layout(plan.base)
    total = _check_output(out, plan, layout, force)
    tmp = _fresh_partial(out)
    cache = DigestCache() if hash_cache else None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as write_pool, single_threaded_torch():
            readers = [_HashingReader(c, pool, chunk_elements, cache) for c in plan.inputs]
            header_record = provenance.build_record(plan, digests=None)
            metadata = {"format": "pt", provenance.METADATA_KEY: json.dumps(header_record, separators=(",", ":"))}
            writers = [_write_file(tmp / file_name, names, plan, readers, metadata, chunk_elements, progress,
                                   write_pool) for file_name, names in layout.items()]
            digests: dict[Path, str] = {}
            for reader in readers:
                digests.update(reader.digests())
        if cache is not None:
            cache.put(digests)
        patches = provenance.placeholders_for(plan, digests)
        for writer in writers:
            writer.close(patches)
        record = provenance.build_record(plan, digests)
        record["created"] = header_record["created"]
        _write_directory_files(tmp, plan, layout, record)
        _install(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = [out / name for name in layout]
    return MergeResult(out, files, total, time.perf_counter() - started, record)


def _merge_orbax(plan: MergePlan, out: Path, force: bool, progress, hash_cache: bool,
                 started: float) -> MergeResult:
    """An openpi merge, written by orbax and laid out as the base.

    The inputs are in memory already (orbax reads whole arrays), so each tensor is merged whole. The output is a
    params directory, or a step directory with `params/` and the base's assets; provenance goes into
    retain_merge.json beside the params.
    """
    from retain_ros.merge.orbax_io import ITEM, write_params

    base = plan.base
    layout = {ITEM: list(base.specs)}
    total = _check_output(out, plan, layout, force)
    tmp = _fresh_partial(out)
    cache = DigestCache() if hash_cache else None
    try:
        with single_threaded_torch():
            tied_coeffs = {n: plan.coeffs_of(names[0]) for names in plan.tied for n in names}
            merged = {}
            for name, spec in base.specs.items():
                parts = [checkpoint.read_tensor(name) for checkpoint in plan.inputs]
                coeffs = tied_coeffs.get(name) or plan.coeffs_of(name)
                if not spec.is_float:
                    merged[name] = parts[0]
                else:
                    merged[name] = combine([p.to(spec.dtype) for p in parts], coeffs)
                if progress is not None:
                    progress(merged[name].numel() * merged[name].element_size())
        step_dir = base.params_dir != base.path
        write_params(tmp / ITEM if step_dir else tmp / "tree", merged, base.nnx)
        if not step_dir:  # the output is the params directory itself
            for item in (tmp / "tree").iterdir():
                item.rename(tmp / item.name)
            (tmp / "tree").rmdir()
        digests = {}
        for checkpoint in plan.inputs:
            for file in checkpoint.files:
                digests[file] = (cache.get(file) if cache is not None else None) or sha256_file(file)
        if cache is not None:
            cache.put(digests)
        record = provenance.build_record(plan, digests)
        _copy_carry_over(tmp, base)
        provenance.write_record(tmp, record)
        _install(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MergeResult(out, [out / ITEM if step_dir else out], total, time.perf_counter() - started, record)


def _write_file(path: Path, names: list[str], plan: MergePlan, readers: list[_HashingReader], metadata: dict,
                chunk_elements: int, progress, write_pool: ThreadPoolExecutor) -> StreamingSafetensorsWriter:
    """Merge the tensors of one output file chunk by chunk, writing each chunk while the next one is computed.

    Two output buffers alternate and at most one write is in flight on `write_pool`, so neither an output buffer nor
    a reader buffer that a pending write may still reference is reused before that write finishes.
    """
    specs = plan.base.specs
    writer = StreamingSafetensorsWriter(path, [(n, dtype_code(specs[n].dtype), specs[n].shape) for n in names],
                                        metadata)
    tied_coeffs = {n: plan.coeffs_of(names_[0]) for names_ in plan.tied for n in names_}
    out_buffers: list[dict[torch.dtype, torch.Tensor]] = [{}, {}]
    pending: Future | None = None
    try:
        for slot, (name, start, count) in enumerate(_chunks(names, specs, chunk_elements)):
            spec = specs[name]
            coeffs = tied_coeffs.get(name) or plan.coeffs_of(name)
            parts = [reader.read(name, start, count) for reader in readers]
            if not spec.is_float:
                merged = parts[0]  # integer/bool: equal across inputs, or taken from the base (plan warned)
            elif any(p.dtype != spec.dtype for p in parts):  # --allow-dtype-cast
                merged = combine([p.float() for p in parts], coeffs).to(spec.dtype)
            else:
                buffers = out_buffers[slot % 2]
                buf = buffers.setdefault(spec.dtype, torch.empty(chunk_elements, dtype=spec.dtype))[:count]
                merged = combine(parts, coeffs, out=buf)
            if pending is not None:
                pending.result()
            pending = write_pool.submit(writer.write, merged)
            if progress is not None:
                progress(merged.numel() * merged.element_size())
        if pending is not None:
            pending.result()
    except BaseException:
        if pending is not None:
            pending.exception()  # let the in-flight write finish before the file is closed
        writer.abort()
        raise
    return writer


def _chunks(names: list[str], specs, chunk_elements: int):
    """(name, first element, element count) of every chunk, in write order (empty tensors yield nothing)."""
    for name in names:
        numel = specs[name].numel
        for start in range(0, numel, chunk_elements):
            yield name, start, min(chunk_elements, numel - start)


def _fresh_partial(out: Path) -> Path:
    """An empty hidden directory beside `out` to write into; `_install` renames it to `out` when complete."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _check_output(out: Path, plan: MergePlan, layout: dict[str, list[str]], force: bool) -> int:
    """Refuse outputs that would overwrite an input or an existing checkpoint; check free space. Returns bytes."""
    resolved = out.resolve()
    for checkpoint in plan.inputs:
        if resolved == checkpoint.path.resolve() or resolved in [f.resolve() for f in checkpoint.files]:
            raise ConfigError(f"--out {out} is one of the inputs; choose a new directory")
    if out.exists() and not force:
        raise ConfigError(f"output {out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory; remove it or choose another --out")
    total = sum(plan.base.specs[n].numel * plan.base.specs[n].dtype.itemsize for names in layout.values()
                for n in names)
    parent = out.parent if out.parent.exists() else Path(".")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write to {parent.resolve()}; choose an --out in a writable directory")
    free = shutil.disk_usage(parent).free
    if free < total * 1.02:
        raise ConfigError(f"not enough disk space for the merged checkpoint in {parent.resolve()}: need "
                          f"{total / 1e9:.2f} GB, {free / 1e9:.2f} GB free")
    return total


def _write_directory_files(tmp: Path, plan: MergePlan, layout: dict[str, list[str]], record: dict) -> None:
    """Index (for sharded outputs), the base's other files (config, tokenizer, stats), and retain_merge.json."""
    if len(layout) > 1 or plan.base.kind == "sharded":
        total = sum(plan.base.specs[n].numel * plan.base.specs[n].dtype.itemsize for names in layout.values()
                    for n in names)
        weight_map = {n: file_name for file_name, names in layout.items() for n in names}
        index = {"metadata": {"total_size": total, provenance.METADATA_KEY: "see retain_merge.json"},
                 "weight_map": weight_map}
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    _copy_carry_over(tmp, plan.base)
    provenance.write_record(tmp, record)


def _copy_carry_over(tmp: Path, base: Checkpoint) -> None:
    """The base's files besides its weights (config, tokenizer, statistics; an openpi step's assets/)."""
    for item in base.carry_over:
        if item.is_dir():
            shutil.copytree(item, tmp / item.name)
        else:
            shutil.copy2(item, tmp / item.name)


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished temporary directory to `out`; an old output is removed only after that succeeded."""
    old = None
    if out.exists():
        if not force:
            raise ConfigError(f"output {out} appeared while merging; pass --force to replace it")
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s", out)
