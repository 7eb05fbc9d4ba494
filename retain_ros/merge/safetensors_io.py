"""The safetensors file format at byte level: header parsing, ranged reads and a streaming writer.

Why not `safetensors.torch.load_file` / `save_file`: they hold whole files in memory (or map them, which counts every
touched page in the process's RSS). The format is simple (8-byte little-endian header length, a JSON header, raw
little-endian tensor bytes), so reading byte ranges with pread and writing the header first, then each tensor's bytes
as they are produced, keeps peak memory at one chunk.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from retain_ros.errors import ConfigError

# safetensors dtype codes <-> torch dtypes (the subset checkpoints use).
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_CODES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the reference implementation enforces


def dtype_code(dtype: torch.dtype) -> str:
    """Return the safetensors code of a torch dtype (e.g. torch.bfloat16 -> 'BF16')."""
    try:
        return DTYPE_CODES[dtype]
    except KeyError:
        raise ConfigError(f"dtype {dtype} cannot be stored in safetensors by this tool") from None


@dataclass(frozen=True)
class HeaderEntry:
    """Where one tensor's bytes live in a safetensors file."""

    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offset of the first byte
    end: int  # absolute file offset one past the last byte

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed header: tensors in file order, the metadata map and where the data section starts."""

    path: Path
    entries: dict[str, HeaderEntry]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def read_header(path: Path) -> SafetensorsHeader:
    """Parse a safetensors header without reading any tensor data.

    Raises:
        ConfigError: the file is missing, truncated or not safetensors.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise ConfigError(f"{path}: not a safetensors file (shorter than 8 bytes); re-export the checkpoint")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(_MAX_HEADER_BYTES, size - 8):
                raise ConfigError(f"{path}: corrupt safetensors header (declared length {header_len} bytes, file "
                                  f"{size} bytes); the file is truncated or not safetensors")
            header = json.loads(f.read(header_len))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: corrupt safetensors header ({exc}); the file is truncated or not safetensors") \
            from None
    data_start = 8 + header_len
    metadata = header.pop("__metadata__", None) or {}
    entries = {}
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        if spec["dtype"] not in DTYPES:
            raise ConfigError(f"{path}: tensor '{name}' has dtype {spec['dtype']}, which this tool does not merge "
                              f"(supported: {', '.join(DTYPES)})")
        if data_start + end > size:
            raise ConfigError(f"{path}: tensor '{name}' extends past the end of the file; the file is truncated "
                              "(re-copy or re-export it)")
        entries[name] = HeaderEntry(spec["dtype"], tuple(spec["shape"]), data_start + begin, data_start + end)
    ordered = dict(sorted(entries.items(), key=lambda kv: kv[1].begin))
    return SafetensorsHeader(path, ordered, dict(metadata), data_start, size)


def pread_into(fd: int, buffer: torch.Tensor, offset: int) -> None:
    """Fill a contiguous CPU tensor with the file bytes at `offset` (the tensor's byte size is the read length)."""
    view = buffer.view(torch.uint8).numpy()
    done = 0
    while done < view.nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise ConfigError(f"unexpected end of file while reading at offset {offset + done}; the file is truncated")
        done += got


class StreamingSafetensorsWriter:
    """Writes a safetensors file whose header is known up front, tensor bytes appended in header order.

    The metadata may contain placeholder strings (for values known only at the end, such as input checksums) that
    `close` replaces in place; each replacement must have the placeholder's length so the header does not move.
    """

    def __init__(self, path: Path, tensors: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]):
        """Create the file and write its header.

        Args:
            path: file to create.
            tensors: (name, dtype code, shape) in the order their bytes will be written.
            metadata: the string->string `__metadata__` map.
        """
        self.path = Path(path)
        header: dict[str, object] = {"__metadata__": metadata}
        offset = 0
        self._sizes = []
        for name, code, shape in tensors:
            nbytes = math.prod(shape) * torch.empty((), dtype=DTYPES[code]).element_size()
            header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._sizes.append((name, nbytes))
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned, as the reference writer does
        self._header = raw
        self.total_bytes = 8 + len(raw) + offset
        self._file = open(self.path, "wb")
        self._file.write(struct.pack("<Q", len(raw)) + raw)
        self._index = 0
        self._written_in_tensor = 0

    def write(self, chunk: torch.Tensor) -> None:
        """Append the bytes of the next piece of the current tensor (contiguous CPU tensor)."""
        view = chunk.contiguous().view(torch.uint8).numpy()
        self._file.write(view.data)
        self._written_in_tensor += view.nbytes
        name, nbytes = self._sizes[self._index]
        if self._written_in_tensor > nbytes:
            raise AssertionError(f"wrote {self._written_in_tensor} bytes for '{name}', expected {nbytes}")
        if self._written_in_tensor == nbytes:
            self._index += 1
            self._written_in_tensor = 0

    def close(self, replacements: dict[str, str] | None = None) -> None:
        """Finish the file, patching metadata placeholders in the header.

        Raises:
            AssertionError: not every tensor was written completely (a bug in the caller, not a user error).
        """
        while self._index < len(self._sizes) and self._sizes[self._index][1] == 0:
            self._index += 1  # empty tensors need no bytes
        if self._index != len(self._sizes):
            raise AssertionError(f"{self.path}: {len(self._sizes) - self._index} tensors were not written")
        if replacements:
            patched = self._header
            for placeholder, value in replacements.items():
                if len(placeholder) != len(value):
                    raise AssertionError("a metadata placeholder and its value must have the same length")
                patched = patched.replace(placeholder.encode(), value.encode())
            self._file.seek(8)
            self._file.write(patched)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the temporary directory)."""
        self._file.close()
