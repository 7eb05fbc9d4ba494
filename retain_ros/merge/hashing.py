"""sha256 of input files from the bytes a merge reads anyway, so provenance costs no second pass over the disk.

A merge reads each input file front to back (tensors in file order), so the hash can be fed in order as chunks arrive;
gaps between tensors are read and hashed, and a file read out of order falls back to one full pass at the end. The
hashing runs on a worker thread (hashlib releases the GIL), i.e. on the second core while the first one merges.

Digests are remembered in a small cache keyed by (real path, size, mtime, ctime, inode), the way git's index trusts
unchanged files, so merging the same inputs at several alphas hashes them once.
"""

from __future__ import annotations

import hashlib
import json
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


def default_cache_path() -> Path:
    """$XDG_CACHE_HOME/retain_ros/sha256.json (or ~/.cache/...)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "retain_ros" / "sha256.json"


class DigestCache:
    """sha256 digests of files that have not changed since they were hashed.

    A file counts as unchanged while its size, mtime, ctime and inode are the same; ctime cannot be set back by a user
    program, so rewriting a file in place (even with its old mtime restored) invalidates its entry.
    """

    def __init__(self, path: Path | None = None):
        self.path = default_cache_path() if path is None else Path(path)
        try:
            self._entries: dict[str, dict] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    @staticmethod
    def _key(file: Path) -> tuple[str, list[int]]:
        st = os.stat(file)
        return os.path.realpath(file), [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, file: Path) -> str | None:
        """The remembered digest of `file`, or None when unknown or changed."""
        name, stamp = self._key(file)
        entry = self._entries.get(name)
        return entry["sha256"] if entry and entry.get("stamp") == stamp else None

    def put(self, digests: dict[Path, str]) -> None:
        """Remember digests and save the cache (atomically; a failure to save only costs a re-hash later)."""
        for file, digest in digests.items():
            name, stamp = self._key(file)
            self._entries[name] = {"stamp": stamp, "sha256": digest}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self._entries))
            tmp.replace(self.path)
        except OSError:
            pass
