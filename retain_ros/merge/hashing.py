"""sha256 of input files from the bytes a merge reads anyway, so provenance costs no second pass over the disk.

A merge reads each input file front to back (tensors in file order), so the hash can be fed in order as chunks arrive;
gaps between tensors are read and hashed, and a file read out of order falls back to one full pass at the end. The
hashing runs on a worker thread (hashlib releases the GIL), i.e. on the second core while the first one merges.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

_READ_BLOCK = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    """sha256 of a whole file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


class InOrderFileHasher:
    """Hashes one file from (offset, bytes) pieces fed in increasing offset order."""

    def __init__(self, path: Path, pool: ThreadPoolExecutor):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._pool = pool  # one worker: updates run in submission order
        self._hash = hashlib.sha256()
        self._cursor = 0
        self._in_order = True
        self._file = None  # opened only if a gap between tensors must be read

    def feed(self, offset: int, data) -> list[Future]:
        """Hash `data` (a buffer) found at `offset`; returns the futures that still reference `data`.

        The caller must not overwrite `data` before those futures are done.
        """
        if not self._in_order:
            return []
        if offset < self._cursor:
            self._in_order = False
            return []
        futures = []
        if offset > self._cursor:
            gap = os.pread(self._fd(), offset - self._cursor, self._cursor)
            futures.append(self._pool.submit(self._hash.update, gap))
        futures.append(self._pool.submit(self._hash.update, data))
        self._cursor = offset + memoryview(data).nbytes
        return futures

    def _fd(self) -> int:
        if self._file is None:
            self._file = open(self.path, "rb")
        return self._file.fileno()

    def hexdigest(self) -> str:
        """Finish (hash the tail, or the whole file when pieces came out of order) and return the hex digest."""
        if not self._in_order:
            digest = sha256_file(self.path)
        else:
            if self._cursor < self.size:
                with open(self.path, "rb") as f:
                    f.seek(self._cursor)
                    while block := f.read(_READ_BLOCK):
                        self._pool.submit(self._hash.update, block).result()
            self._pool.submit(lambda: None).result()  # wait for queued updates
            digest = self._hash.hexdigest()
        if self._file is not None:
            self._file.close()
        return digest
