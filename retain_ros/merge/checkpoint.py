"""Opening checkpoints in the layouts VLA users have: names, dtypes and shapes from headers, tensor bytes on demand.

Layouts: a directory with config.json + model.safetensors, or shards + model.safetensors.index.json (the LeRobot and
Hugging Face layout); a bare .safetensors file; a PyTorch .pt/.bin/.pth state dict (read with weights_only=True only,
so a pickle that needs code is refused rather than executed); an openpi checkpoint (an orbax `params` directory, or
the step directory holding it: `orbax_io`, in .venv-openpi).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from retain_ros.errors import ConfigError
from retain_ros.merge.safetensors_io import DTYPES, SafetensorsHeader, pread_into, read_header

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
TORCH_NAMES = ("pytorch_model.bin", "model.pt", "model.bin", "model.pth")
TORCH_SUFFIXES = (".pt", ".bin", ".pth")
PROVENANCE_NAME = "retain_merge.json"


@dataclass(frozen=True)
class TensorSpec:
    """What the header says about one tensor."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point


class Checkpoint:
    """An opened checkpoint. Construction reads headers only; tensor bytes are read by `read`.

    Attributes:
        path: what the user named (directory or file).
        kind: 'directory', 'sharded', 'safetensors' (bare file), 'torch' or 'orbax' (openpi).
        files: the weight files, in shard order.
        specs: every tensor, ordered by file and then by position in the file.
        shard_of: tensor name -> weight file name (the output keeps the same sharding).
        carry_over: the other files of a checkpoint directory (config, tokenizer, normalisation stats).
        tied: groups of names that share storage in a torch state dict (always empty for safetensors).
        metadata: the safetensors `__metadata__` of the first weight file.
        params_dir: the orbax `params` directory (openpi checkpoints; None otherwise).
        nnx: an openpi checkpoint whose leaf key paths end in `value` (nnx.State, written back the same way).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.carry_over: list[Path] = []
        self.tied: list[list[str]] = []
        self.headers: dict[Path, SafetensorsHeader] = {}
        self._torch_state: dict[str, torch.Tensor] | None = None
        self._fds: dict[Path, int] = {}
        self.params_dir: Path | None = None
        self.nnx = False
        if not self.path.exists():
            raise ConfigError(f"checkpoint not found: {self.path} (give a checkpoint directory, a .safetensors file "
                              "or a .pt/.bin state dict)")
        if self.path.is_dir():
            self._open_directory()
        elif self.path.suffix == ".safetensors":
            self.kind = "safetensors"
            self._open_safetensors([self.path])
        elif self.path.suffix in TORCH_SUFFIXES:
            self.kind = "torch"
            self._open_torch(self.path)
        else:
            raise ConfigError(f"{self.path}: unknown checkpoint format '{self.path.suffix}'; expected a directory, "
                              f".safetensors, or a PyTorch state dict ({', '.join(TORCH_SUFFIXES)})")
        self.shard_of = {name: spec.file.name for name, spec in self.specs.items()}

    # -- opening ------------------------------------------------------------------------------------------------
    def _open_directory(self) -> None:
        from retain_ros.merge.orbax_io import params_dir_of

        index = self.path / INDEX_NAME
        params_dir = params_dir_of(self.path)
        if params_dir is not None:
            self._open_orbax(params_dir)
            return
        if index.is_file():
            self.kind = "sharded"
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(f"{index}: not a valid safetensors index ({exc!r}); it needs a 'weight_map'") \
                    from None
            shard_names = list(dict.fromkeys(weight_map.values()))
            self._open_safetensors([self.path / name for name in shard_names])
            listed = set(weight_map)
            if listed != set(self.specs):
                missing = sorted(listed - set(self.specs))[:5]
                raise ConfigError(f"{index} lists tensors its shards do not contain (e.g. {missing}); the checkpoint "
                                  "is incomplete or the index is stale")
            weights = {INDEX_NAME, *shard_names}
        elif (self.path / SINGLE_NAME).is_file():
            self.kind = "directory"
            self._open_safetensors([self.path / SINGLE_NAME])
            weights = {SINGLE_NAME}
        else:
            torch_file = next((self.path / n for n in TORCH_NAMES if (self.path / n).is_file()), None)
            if torch_file is None:
                found = sorted(p.name for p in self.path.iterdir())[:10]
                raise ConfigError(f"{self.path}: no weights found; a checkpoint directory holds {SINGLE_NAME}, "
                                  f"{INDEX_NAME} with shards, or {TORCH_NAMES[0]} (found: {found})")
            self.kind = "directory"
            self._open_torch(torch_file)
            weights = {torch_file.name}
        self.carry_over = sorted(p for p in self.path.iterdir()
                                 if p.name not in weights and p.name != PROVENANCE_NAME and not p.name.startswith("."))

    def _open_safetensors(self, files: list[Path]) -> None:
        self.files = files
        self.specs = {}
        for file in files:
            header = read_header(file)
            self.headers[file] = header
            for name, entry in header.entries.items():
                if name in self.specs:
                    raise ConfigError(f"tensor '{name}' appears in both {self.specs[name].file} and {file}; the "
                                      "shards overlap")
                self.specs[name] = TensorSpec(name, DTYPES[entry.dtype], entry.shape, file)
        first = self.headers[files[0]] if files else None
        self.metadata = dict(first.metadata) if first else {}

    def _open_orbax(self, params_dir: Path) -> None:
        """An openpi checkpoint: every array read into memory (orbax restores whole arrays).

        A step directory's other entries (assets/: normalisation statistics) are carried over, its optimizer state
        (train_state/) is not.
        """
        from retain_ros.merge.orbax_io import read_params

        self.kind, self.params_dir, self.metadata = "orbax", params_dir, {}
        state, self.nnx = read_params(params_dir)
        self._torch_state = state
        self.files = sorted(p for p in params_dir.rglob("*") if p.is_file())
        self.specs = {name: TensorSpec(name, t.dtype, tuple(t.shape), params_dir) for name, t in state.items()}
        if params_dir != self.path:
            self.carry_over = sorted(p for p in self.path.iterdir() if p != params_dir and p.name not in
                                     ("train_state", PROVENANCE_NAME) and not p.name.startswith("."))

    def _open_torch(self, file: Path) -> None:
        self.files = [file]
        self.metadata = {}
        state = _load_torch_state(file)
        self._torch_state = state
        self.specs = {name: TensorSpec(name, t.dtype, tuple(t.shape), file) for name, t in state.items()}
        self.tied = _storage_ties(state)

    # -- reading ------------------------------------------------------------------------------------------------
    def locate(self, name: str, start: int, count: int) -> tuple[Path, int, int] | None:
        """Return (file, byte offset, byte count) of elements [start, start+count) of a tensor; None for torch files."""
        if self._torch_state is not None:
            return None
        spec = self.specs[name]
        itemsize = torch.empty((), dtype=spec.dtype).element_size()
        entry = self.headers[spec.file].entries[name]
        return spec.file, entry.begin + start * itemsize, count * itemsize

    def read(self, name: str, start: int = 0, count: int | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Read elements [start, start+count) of a tensor, flattened, in its stored dtype.

        Args:
            name: tensor name.
            start: first element (row-major order).
            count: number of elements (default: to the end).
            out: optional contiguous 1-D CPU buffer of the tensor's dtype with at least `count` elements, reused to
                keep memory flat across a merge.
        """
        spec = self.specs[name]
        count = spec.numel - start if count is None else count
        if self._torch_state is not None:
            flat = self._torch_state[name].reshape(-1)[start:start + count]
            if out is None:
                return flat
            buf = out[:count]
            buf.copy_(flat)
            return buf
        buf = torch.empty(count, dtype=spec.dtype) if out is None else out[:count]
        file, offset, _ = self.locate(name, start, count)
        pread_into(self._fd(file), buf, offset)
        return buf

    def read_tensor(self, name: str) -> torch.Tensor:
        """Read one whole tensor with its shape (a fresh tensor that owns its memory)."""
        spec = self.specs[name]
        return self.read(name).clone().reshape(spec.shape) if self._torch_state is not None \
            else self.read(name).reshape(spec.shape)

    def file_stamps(self) -> dict[Path, tuple[int, int, int, int]]:
        """(size, mtime, ctime, inode) of each weight file as this checkpoint reads it (the open descriptor's).

        A file rewritten in place changes its stamp; one replaced by a rename does not change what is read here.
        """
        stamps = {}
        for file in self.files:
            st = os.fstat(self._fd(file)) if self.is_safetensors else os.stat(file)
            stamps[file] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        return stamps

    def _fd(self, file: Path) -> int:
        if file not in self._fds:
            self._fds[file] = os.open(file, os.O_RDONLY)
        return self._fds[file]

    def close(self) -> None:
        """Release open file descriptors."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_safetensors(self) -> bool:
        """True when tensor bytes are read by byte range from safetensors files (False for torch state dicts)."""
        return self._torch_state is None

    @property
    def num_parameters(self) -> int:
        return sum(s.numel for s in self.specs.values())

    def describe(self) -> str:
        """One line: path, layout, tensor and parameter counts."""
        return (f"{self.path} ({self.kind}, {len(self.files)} file(s), {len(self.specs)} tensors, "
                f"{self.num_parameters / 1e6:.2f}M parameters)")


def _load_torch_state(file: Path) -> dict[str, torch.Tensor]:
    """Load a state dict with weights_only=True (memory-mapped when the file allows it)."""
    try:
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(file, map_location="cpu", weights_only=True)  # legacy (non-zip) format cannot be mapped
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise ConfigError(f"{file}: refusing to load this PyTorch file: it contains pickled Python objects that would "
                          f"run code on load ({first_line}). Only plain state dicts are read (weights_only=True). Fix: "
                          "on a machine you trust, load it and save `model.state_dict()` with "
                          "safetensors.torch.save_file") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ConfigError(f"{file}: cannot read this PyTorch file ({exc}); it may be truncated or not a state dict") \
            from None
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model") \
            and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict):
        raise ConfigError(f"{file}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{file}: entry '{name}' is a {type(value).__name__}, not a tensor; save only the "
                              "model's state_dict()")
    return obj


def _storage_ties(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """Names whose tensors are the same view of the same storage (e.g. lm_head.weight and embed_tokens.weight)."""
    by_view: dict[tuple, list[str]] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        by_view.setdefault(key, []).append(name)
    return [names for names in by_view.values() if len(names) > 1]
