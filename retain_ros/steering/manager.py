"""The node's steering: what serves now, value checkpoints loaded off the control thread, swapped between chunks.

A parameter change (`steering`, `steering_samples`, `steering_checkpoint`) is checked at once (`check`: the mode, the
backend's sampling, the checkpoint's config against the policy, no weights read) so that `ros2 param set` answers
with the reason; the weights then load on a thread of their own and the control thread takes the new setting at its
next chunk (`choose`). A checkpoint that fails to load leaves the serving setting as it was and names the problem in
`last_error` (~/status). The last few value functions stay loaded (and run once at load, so that their first call's
set-up is not the control thread's): switching back to one is a reference swap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import Observation, Policy, PolicySpec
from retain_ros.policy.reference_policy import WEIGHTS_NAME, example_observation
from retain_ros.policy.registry import read_config
from retain_ros.steering.selection import Steered, Steerer
from retain_ros.steering.value_function import ValueFunction, check_fits
from retain_ros.steering.value_model import ValueConfig


KEPT_VALUE_FUNCTIONS = 4  # loaded value functions kept for switching back (a few MB each)


@dataclass(frozen=True)
class SteeringSetting:
    """What the parameters ask for: mode ('none' | 'value'), K samples, the value checkpoint (resolved path)."""

    mode: str = "none"
    samples: int = 10
    checkpoint: str = ""


class SteeringManager:
    """Holds the serving `Steerer` and swaps in new ones between chunks.

    Args:
        spec: the policy's spec (value functions are checked against it).
        can_sample: whether the backend draws several chunks in one forward (`sample_chunks`).
        seed: the steering noise seed.
        on_event: (level, message) for log lines.
    """

    def __init__(self, spec: PolicySpec, can_sample: bool, seed: int = 0,
                 on_event: Callable[[str, str], None] = lambda level, message: None):
        self.spec, self.can_sample, self.seed, self.on_event = spec, can_sample, seed, on_event
        self._lock = threading.Lock()
        self._serving = SteeringSetting()
        self._steerer = Steerer(seed=seed)
        self._ready: tuple[SteeringSetting, Steerer] | None = None
        self._wanted = SteeringSetting()
        self._loads = 0  # +1 per request: a load finishing after a newer request is dropped
        self._loading = False
        # loaded value functions by checkpoint with their weights file's mtime (a rewritten file loads again)
        self._values: dict[str, tuple[int, ValueFunction]] = {}
        self.last_error = ""
        self.last: Steered | None = None
        self.load_s = 0.0

    # -- parameter side ----------------------------------------------------------------------------------------
    def check(self, setting: SteeringSetting) -> None:
        """Refuse a setting that cannot serve (no weights read).

        Raises:
            ConfigError: value mode without a checkpoint, a backend that cannot sample, or a checkpoint whose config
                does not fit the policy (one line naming the mismatch).
        """
        if setting.mode == "none":
            return
        if not self.can_sample and setting.samples > 1:
            raise ConfigError("steering value: this policy backend cannot draw several chunks per observation; use "
                              "steering none (or steering_samples 1)")
        if not setting.checkpoint:
            raise ConfigError("steering value needs steering_checkpoint (a directory written by retain-train value); "
                              "set it first, or both at once")
        try:
            config = ValueConfig.from_dict(read_config(setting.checkpoint))
        except ConfigError as exc:
            raise ConfigError(f"steering_checkpoint: {exc}") from None
        check_fits(config, self.spec, setting.checkpoint)

    def load_initial(self, setting: SteeringSetting) -> None:
        """Serve `setting` from the start (loads on the caller's thread).

        Raises:
            ConfigError: the setting or its checkpoint cannot serve.
        """
        self.check(setting)
        steerer = self._build(setting)
        with self._lock:
            self._wanted = self._serving = setting
            self._steerer = steerer

    def request(self, setting: SteeringSetting) -> None:
        """Serve `setting` from a coming chunk; a checkpoint not loaded yet loads on its own thread (checked first)."""
        with self._lock:
            self._wanted = setting
            self._loads += 1
            ticket = self._loads
            needs_load = setting.mode == "value" and self._cached(setting.checkpoint) is None
            if not needs_load:
                self._ready = (setting, self._build(setting))
                return
            self._loading = True
        threading.Thread(target=self._load, args=(setting, ticket), name="retain_value_load", daemon=True).start()

    def _load(self, setting: SteeringSetting, ticket: int) -> None:
        started = time.perf_counter()
        try:
            value = self._loaded(setting.checkpoint)
        except Exception as exc:  # noqa: BLE001  (any failure is reported; the serving setting stays)
            with self._lock:
                if ticket == self._loads:
                    self._loading = False
                    self.last_error = f"steering_checkpoint {setting.checkpoint}: {exc}"
            self.on_event("error", f"value function not loaded, steering stays {self._serving.mode}: {exc}")
            return
        with self._lock:
            if ticket != self._loads:
                return  # a newer request came meanwhile
            self._remember(setting.checkpoint, value)
            self._ready = (setting, self._build(setting))
            self._loading = False
            self.load_s = time.perf_counter() - started
        self.on_event("info", f"value function {setting.checkpoint} loaded in {self.load_s:.2f} s; it steers from "
                              "the next chunk")

    def _build(self, setting: SteeringSetting) -> Steerer:
        """The Steerer of a setting (value mode: with the loaded value function, loading it here if needed)."""
        if setting.mode == "none":
            return Steerer(seed=self.seed)
        value = self._cached(setting.checkpoint)
        if value is None:
            value = self._loaded(setting.checkpoint)
            self._remember(setting.checkpoint, value)
        return Steerer("value", setting.samples, value, seed=self.seed)

    def _cached(self, checkpoint: str) -> ValueFunction | None:
        """A value function loaded before from `checkpoint`, if its weights file has not changed since."""
        kept = self._values.get(checkpoint)
        return kept[1] if kept is not None and kept[0] == _mtime(checkpoint) else None

    def _loaded(self, checkpoint: str) -> ValueFunction:
        """Load and check a value function, and run it once (its first call's set-up stays off the control thread)."""
        value = ValueFunction.from_pretrained(checkpoint)
        value.check_fits(self.spec)
        obs = example_observation(self.spec)
        value.score(obs, np.zeros((1, self.spec.horizon, self.spec.action_space.dim), np.float32))
        return value

    def _remember(self, checkpoint: str, value: ValueFunction) -> None:
        """Keep `value` (and the few loaded before it): switching back to one is a reference swap."""
        self._values.pop(checkpoint, None)
        self._values[checkpoint] = (_mtime(checkpoint), value)
        while len(self._values) > KEPT_VALUE_FUNCTIONS:
            self._values.pop(next(iter(self._values)))

    # -- control thread ----------------------------------------------------------------------------------------
    def choose(self, policy: Policy, obs: Observation) -> Steered:
        """Take a ready setting (between chunks), then draw and choose the chunk for `obs`.

        Raises:
            ConfigError: the policy refuses the observation.
        """
        with self._lock:
            if self._ready is not None:
                (self._serving, self._steerer), self._ready = self._ready, None
                self.last_error = ""
                self.on_event("info", f"steering now {self.describe(self._serving)}")
            steerer = self._steerer
        steered = steerer.choose(policy, obs)
        self.last = steered
        return steered

    @staticmethod
    def describe(setting: SteeringSetting) -> str:
        """'none' or 'value (K=10, /path)'."""
        if setting.mode == "none":
            return "none"
        return f"{setting.mode} (K={setting.samples}, {setting.checkpoint})"

    def status(self) -> dict:
        """The ~/status entry: serving and wanted settings, the last chunk's Q and spread, load state and errors."""
        with self._lock:
            serving, wanted, last = self._serving, self._wanted, self.last
            return {"mode": serving.mode, "samples": serving.samples if serving.mode != "none" else 1,
                    "checkpoint": serving.checkpoint if serving.mode != "none" else "",
                    "wanted": self.describe(wanted), "loading": self._loading, "last_error": self.last_error,
                    "value": last.value if last is not None else None,
                    "spread": last.spread if last is not None else None,
                    "sample_index": last.index if last is not None else 0, "load_s": self.load_s}


def _mtime(checkpoint: str) -> int:
    """The modification time (ns) of a value checkpoint's weights; -1 when it cannot be read."""
    try:
        return (Path(checkpoint) / WEIGHTS_NAME).stat().st_mtime_ns
    except OSError:
        return -1
