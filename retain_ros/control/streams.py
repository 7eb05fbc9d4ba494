"""The latest sample of each input stream, its age and its last error (plain logic, no ROS).

Subscription callbacks (executor thread) `put` converted samples or `fail` with the conversion error; the control
thread asks `fresh(now)` for the samples and what is wrong with them in one step, so a stream that fails between a
check and a read can never reach an observation. A message whose header stamp does not advance past the stored
sample's (a frozen or re-published frame) is not a new sample: it refreshes nothing, so a stream that only repeats
itself goes stale. One lock guards the dict; samples are immutable once stored (numpy
arrays are not written after `put`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One converted message.

    Attributes:
        value: the converted payload (image array, joint positions, text ...).
        received_ns: node-clock time of arrival (ages are measured on this; header stamps may be on another clock).
        stamp_ns: the message's header stamp (0 when it has none).
    """

    value: object
    received_ns: int
    stamp_ns: int = 0


class StreamSet:
    """Freshness bookkeeping of named streams.

    Args:
        max_age_s: stream name -> maximum sample age in seconds (<= 0: never stale once received, e.g. an
            instruction that is published once).
    """

    def __init__(self, max_age_s: Mapping[str, float]) -> None:
        self.max_age_s = dict(max_age_s)
        self._lock = threading.Lock()
        self._samples: dict[str, Sample] = {}
        self._errors: dict[str, str] = {}
        self.counts = {name: 0 for name in self.max_age_s}
        self.repeats = {name: 0 for name in self.max_age_s}

    def put(self, name: str, value: object, received_ns: int, stamp_ns: int = 0) -> None:
        """Store a good sample (clears the stream's error); a repeat (stamp not advancing) is only counted."""
        with self._lock:
            old = self._samples.get(name)
            if stamp_ns > 0 and old is not None and old.stamp_ns >= stamp_ns:
                self.repeats[name] = self.repeats.get(name, 0) + 1
                return
            self._samples[name] = Sample(value, int(received_ns), int(stamp_ns))
            self._errors.pop(name, None)
            self.counts[name] = self.counts.get(name, 0) + 1

    def fail(self, name: str, message: str) -> None:
        """Record a bad message: the stream has no usable sample until a good one arrives."""
        with self._lock:
            self._samples.pop(name, None)
            self._errors[name] = message

    def snapshot(self) -> dict[str, Sample]:
        """The current samples (a copy of the dict; samples themselves are immutable)."""
        with self._lock:
            return dict(self._samples)

    def fresh(self, now_ns: int) -> tuple[dict[str, Sample], dict[str, str]]:
        """The current samples and the problems with them, read under one lock (atomic "fresh snapshot or why not").

        Returns:
            (samples, problems): every stream in `max_age_s` is in `samples` when `problems` is empty.
        """
        with self._lock:
            return dict(self._samples), self._problems(now_ns)

    def problems(self, now_ns: int) -> dict[str, str]:
        """Stream name -> why it cannot be used now (never received, stale, bad message); empty when all are fresh."""
        with self._lock:
            return self._problems(now_ns)

    def _problems(self, now_ns: int) -> dict[str, str]:
        """`problems` for a caller that holds the lock."""
        out = {}
        for name, max_age in self.max_age_s.items():
            if name in self._errors:
                out[name] = self._errors[name]
            elif name not in self._samples:
                out[name] = "no message received yet"
            else:
                age = (now_ns - self._samples[name].received_ns) * 1e-9
                if max_age > 0 and age > max_age:
                    repeats = self.repeats.get(name, 0)
                    out[name] = (f"stale: last message {age:.2f} s ago (max age {max_age} s)" + (
                        f"; {repeats} message(s) repeated an old header stamp (a frozen source?)" if repeats else ""))
        return out

    def ages_s(self, now_ns: int) -> dict[str, float]:
        """Stream name -> age of its sample in seconds (missing streams are left out)."""
        with self._lock:
            return {n: (now_ns - s.received_ns) * 1e-9 for n, s in self._samples.items()}
