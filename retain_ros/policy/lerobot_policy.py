"""LeRobot pi0 / pi0.5 / SmolVLA checkpoints behind the Policy interface, with weight swaps for live merges.

LeRobot defines these models; this backend only drives them. The checkpoint directory is LeRobot's own layout
(config.json, model.safetensors, policy_preprocessor*.json / policy_postprocessor*.json with the normalisation
statistics), loaded with LeRobot's `PreTrainedConfig.from_pretrained`, its policy class's `from_pretrained` and
`make_pre_post_processors`, from local files only. `predict` assembles the batch the way LeRobot's own inference loop
does (`prepare_observation_for_inference`), then preprocessor -> `predict_action_chunk` -> postprocessor, and maps the
output to a DROID action through `LeRobotIO`.

Weights are named as in the checkpoint's safetensors file, so the names of `named_parameters()` are those a
`ResidentMerger` built from the same files produces. LeRobot's pi0 loader catches any failure to load the state dict,
prints a warning and carries on with random weights; so after loading, every model tensor is compared with the file
and a difference refuses the checkpoint.

Thread model of the weight swap: one lock, held by `predict` for the whole pre/model/post pass, by `promote_standby`
for the reference swap to the standby module the node's merge wrote, and by `load_merged` for an in-place copy (one
copy of the model; validation happens before, outside the lock). A predict therefore runs entirely on the old or
entirely on the new weights.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from retain_ros.errors import ConfigError
from retain_ros.policy.interface import (DROID_JOINT_VELOCITY, JOINT_POSITION, ActionChunk, ActionSpace, Observation,
                                         PolicySpec, validate_observation)
from retain_ros.policy.lerobot_io import DROID_FR3_IO, LeRobotIO, check_features
from retain_ros.merge.statistics import check_action_kind, read_stats
from retain_ros.policy.registry import read_config

log = logging.getLogger(__name__)
LEROBOT_TYPES = ("pi0", "pi05", "smolvla")
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "policy_preprocessor.json"
POSTPROCESSOR_NAME = "policy_postprocessor.json"
DTYPES = ("bfloat16", "float32")  # LeRobot's pi0 / pi0.5 `dtype` values
STATE_KEY = "observation.state"
ACTION_KEY = "action"
MODEL_PREFIX = "model."
INSTALL_HINT = ("Fix: `make lerobot-env` and run the node from .venv-lerobot (Python >= 3.12), or on a robot PC "
                "`pip install 'lerobot[pi,smolvla]'`")


def import_lerobot() -> dict:
    """Import LeRobot's loading and inference entry points (on first use, so other backends never need it).

    Raises:
        ConfigError: LeRobot (or one of its extras) is not installed in this Python.
    """
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.policies.utils import prepare_observation_for_inference
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise ConfigError(f"LeRobot checkpoints (pi0, pi0.5, SmolVLA) need LeRobot, which this Python cannot import "
                          f"(missing: {missing}). {INSTALL_HINT}") from None
    return {"PreTrainedConfig": PreTrainedConfig, "get_policy_class": get_policy_class,
            "make_pre_post_processors": make_pre_post_processors,
            "prepare_observation_for_inference": prepare_observation_for_inference}


class _LogWriter(io.TextIOBase):
    """A stdout stand-in that sends LeRobot's progress prints to the log, one record per line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("lerobot: %s", line.strip())
        return len(text)


def _quiet() -> contextlib.AbstractContextManager:
    """Route LeRobot's `print`s to logging while it loads (it prints instead of logging)."""
    return contextlib.redirect_stdout(_LogWriter())


class _LeRobotRecords(logging.Filter):
    """Rejects records that LeRobot's own modules emit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/lerobot/" not in record.pathname


@contextlib.contextmanager
def _muted_lerobot_root_records() -> Iterator[None]:
    """Drop what LeRobot logs on the root logger meanwhile (a logger filter sees only records logged on it)."""
    muted = _LeRobotRecords()
    logging.getLogger().addFilter(muted)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(muted)


def _image_size(config: object, image_keys: list[str]) -> tuple[int, int]:
    """(height, width) the policy resizes its images to."""
    if getattr(config, "image_resolution", None):
        h, w = config.image_resolution
        return int(h), int(w)
    if getattr(config, "resize_imgs_with_padding", None):
        w, h = config.resize_imgs_with_padding  # SmolVLA stores (width, height)
        return int(h), int(w)
    shape = config.input_features[image_keys[0]].shape
    return int(shape[1]), int(shape[2])


def weight_map(policy: torch.nn.Module, names: list[str], source: str) -> dict[str, list[str]]:
    """Checkpoint tensor name -> the model state-dict keys it fills, as LeRobot's own loaders map them.

    LeRobot pi0/pi0.5 rename some openpi-era keys (`_fix_pytorch_state_dict_keys`) and add the `model.` prefix; the
    rename runs here on placeholders, so the map follows LeRobot's rules rather than a copy of them.

    Raises:
        ConfigError: checkpoint tensors the model has no place for, or model tensors the checkpoint does not fill.
    """
    state = policy.state_dict()
    fix = getattr(policy, "_fix_pytorch_state_dict_keys", None)
    if fix is not None:
        with _muted_lerobot_root_records():  # its notes on these keys were logged once already, when it loaded
            fixed = fix({n: torch.tensor(i) for i, n in enumerate(names)}, policy.config)
        renamed = [(key, names[int(index)]) for key, index in fixed.items()]
    else:
        renamed = [(n, n) for n in names]
    mapping: dict[str, list[str]] = {n: [] for n in names}
    for key, name in renamed:
        target = next((k for k in (key, MODEL_PREFIX + key) if k in state), None)
        if target is not None:
            mapping[name].append(target)
    extra = [n for n, keys in mapping.items() if not keys]
    filled = {state[k].data_ptr() for keys in mapping.values() for k in keys}
    missing = [k for k, t in state.items() if t.data_ptr() not in filled]
    if extra or missing:
        raise ConfigError(f"{source} does not fit the {type(policy).__name__} its config.json describes: "
                          f"{len(extra)} tensor(s) the model lacks (e.g. {extra[:3]}), {len(missing)} model "
                          f"tensor(s) the file lacks (e.g. {missing[:3]}). Fix: config.json and model.safetensors "
                          "must come from the same checkpoint")
    return mapping


class LeRobotPolicy:
    """A LeRobot pi0 / pi0.5 / SmolVLA policy as a `Policy`.

    Args:
        policy: the LeRobot policy module (eval mode, on its device).
        preprocessor: LeRobot's input pipeline from the checkpoint (normalisation, tokenizer, device).
        postprocessor: LeRobot's output pipeline (unnormalisation).
        io_mapping: how the node's streams and actions line up with the policy's features (checked already).
        names: checkpoint tensor name -> model state-dict keys (`weight_map`).
        device: inference device.
        seed: seed of the sampling noise; every `predict` starts from the same noise, so it is deterministic.
    """

    def __init__(self, policy: torch.nn.Module, preprocessor: object, postprocessor: object, io_mapping: LeRobotIO,
                 names: Mapping[str, list[str]], device: str = "cpu", seed: int = 0):
        lerobot = import_lerobot()
        self._prepare = lerobot["prepare_observation_for_inference"]
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.io = io_mapping
        self.device = torch.device(device)
        self.seed = int(seed)
        config = policy.config
        self.type = str(config.type)
        kind = io_mapping.action
        space = ActionSpace(kind=kind) if kind != JOINT_POSITION else ActionSpace(
            kind=kind, arm_low=-2 * math.pi, arm_high=2 * math.pi)  # a sanity clip; the executor clamps to limits
        # DROID-trained checkpoints are executed as DROID and openpi do: one re-anchored step per period (node
        # parameter execution_mode 'auto'); other kinds as one trajectory per chunk
        self.execution_mode = "stream" if kind == DROID_JOINT_VELOCITY else "chunk"
        self.spec = PolicySpec(camera_names=io_mapping.camera_names,
                               image_size=_image_size(config, list(config.image_features)),
                               action_space=space, horizon=int(config.chunk_size), dt_s=1.0 / io_mapping.rate_hz)
        self._noise_shape = (1, int(config.chunk_size), int(config.max_action_dim))
        self._names = {name: list(keys) for name, keys in names.items()}
        self._targets = self._targets_of(policy)
        self._spares: dict[str, tuple[torch.nn.Module, dict[str, list[torch.Tensor]]]] = {}  # name -> spare copy
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, device: str = "cpu", seed: int = 0,
                        io_mapping: LeRobotIO | None = None, processors_from: str | Path | None = None,
                        dtype: str = "") -> LeRobotPolicy:
        """Build LeRobot's policy and processors from a checkpoint directory, offline.

        Args:
            checkpoint_dir: LeRobot checkpoint (config.json with type pi0 / pi05 / smolvla, model.safetensors,
                policy_preprocessor.json + policy_postprocessor.json with their statistics files).
            device: torch device of the model and the preprocessor's output.
            seed: seed of the sampling noise.
            io_mapping: how cameras, state and actions map (default: `DROID_FR3_IO`).
            processors_from: the checkpoint whose pre/post-processors and statistics to run through (default: this
                one; a finetuned checkpoint's where its statistics differ and the user chose them).
            dtype: '' (the checkpoint's config), 'bfloat16' or 'float32': pi0 / pi0.5's `config.dtype`, with
                LeRobot's own float32 exceptions (bfloat16 halves the memory of each model copy).

        Raises:
            ConfigError: LeRobot missing, files missing, a mapping that does not fit the policy's features, action
                statistics that contradict `io_mapping.action`, or weights that do not fit (or did not load into)
                the model.
        """
        path = Path(checkpoint_dir)
        read_config(path)  # a clear message for a missing directory or config.json before LeRobot's own
        lerobot = import_lerobot()
        io_mapping = io_mapping or DROID_FR3_IO
        for name in (WEIGHTS_NAME, PREPROCESSOR_NAME, POSTPROCESSOR_NAME):
            if not (path / name).is_file():
                raise ConfigError(f"{path} has no {name}; a LeRobot checkpoint saved by LeRobot >= 0.4 holds "
                                  f"config.json, {WEIGHTS_NAME}, {PREPROCESSOR_NAME} and {POSTPROCESSOR_NAME} "
                                  "(older ones: convert with lerobot's migrate_policy_normalization)")
        started = time.perf_counter()
        config = _read_config(lerobot, path, device)
        if dtype:
            if dtype not in DTYPES or not hasattr(config, "dtype"):
                raise ConfigError(f"dtype '{dtype}' is not available for this {config.type} checkpoint; pi0 / pi0.5 "
                                  f"take {' or '.join(DTYPES)}, SmolVLA runs in its checkpoint's dtype: leave it empty")
            config.dtype = dtype
        _check_mapping(io_mapping, config, f"{config.type} checkpoint {path}")  # before building a large model
        processors = Path(processors_from) if processors_from is not None else path
        check_action_kind(read_stats(processors), io_mapping.action, f"{config.type} checkpoint {processors}")
        with _quiet():
            policy_class = lerobot["get_policy_class"](config.type)
            policy = policy_class.from_pretrained(path, config=config, local_files_only=True)
        policy = policy.to(device).eval().requires_grad_(False)
        names = _checked_weights(policy, path / WEIGHTS_NAME)
        pre, post = _processors(lerobot, config, processors, device)
        log.info("loaded LeRobot %s from %s in %.1f s (%d weight tensors, device %s)", config.type, path,
                 time.perf_counter() - started, len(names), device)
        return cls(policy, pre, post, io_mapping, names, device, seed)

    # -- weights -----------------------------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(checkpoint tensor name, tensor) of every weight the model serves (do not modify them)."""
        return iter((name, targets[0]) for name, targets in self._targets.items())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Checkpoint tensor name -> tensor of the serving model."""
        return dict(self.named_parameters())

    def weight_targets(self, which: str = "standby") -> dict[str, list[torch.Tensor]]:
        """Checkpoint tensor name -> the model tensors that hold it, for one copy of the model.

        'serving': the serving copy, only while no predict runs (`Policy.weight_targets`). Any other name: that spare
        copy of the module, which `promote_standby(which)` makes serve (made on first use: one more model's memory
        while it exists).
        """
        if which == "serving":
            return dict(self._targets)
        if which not in self._spares:
            with self._lock:  # not while a predict runs on it: a copy of a module in use could catch a half state
                module = copy.deepcopy(self.policy)
            self._spares[which] = (module, self._targets_of(module))
        return dict(self._spares[which][1])

    def promote_standby(self, which: str = "standby") -> None:
        """Serve spare copy `which` from the next predict on; the old module becomes that spare.

        The swap happens under the lock `predict` holds, so a predict runs wholly on one of them.
        """
        if which not in self._spares:
            raise RuntimeError(f"promote_standby('{which}') without that spare copy; call weight_targets() first")
        with self._lock:
            serving = (self.policy, self._targets)
            self.policy, self._targets = self._spares[which]
            self._spares[which] = serving

    def release_standby(self, which: str | None = None) -> None:
        """Free spare copy `which`, or every spare copy (made again on the next `weight_targets()`)."""
        if which is None:
            self._spares.clear()
        else:
            self._spares.pop(which, None)

    def spare_copies(self) -> tuple[str, ...]:
        """The names of the spare copies that exist now."""
        return tuple(self._spares)

    def _targets_of(self, module: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
        state = module.state_dict()
        return {name: [state[k] for k in keys] for name, keys in self._names.items()}

    def load_merged(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy `tensors` (e.g. `MergedWeights.tensors`) into the running model in one step (one copy of the model).

        Everything is checked before the first byte is copied; the copy runs under the lock `predict` holds, so a
        concurrent predict sees the old or the new weights only. The caller may reuse its buffers afterwards.

        Raises:
            ConfigError: missing, extra, mis-shaped or mis-typed tensors; the old weights keep serving.
        """
        self._check(tensors)
        with self._lock, torch.no_grad():
            for name, targets in self._targets.items():
                for target in targets:
                    target.copy_(tensors[name])

    def _check(self, tensors: Mapping[str, torch.Tensor]) -> None:
        missing = [n for n in self._targets if n not in tensors]
        extra = [n for n in tensors if n not in self._targets]
        if missing or extra:
            raise ConfigError(f"merged weights do not fit the serving {self.type} model: {len(missing)} tensor(s) "
                              f"missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}). Fix: merge "
                              "checkpoints of the architecture the node serves")
        for name, targets in self._targets.items():
            given, want = tensors[name], targets[0]
            if tuple(given.shape) != tuple(want.shape):
                raise ConfigError(f"merged tensor '{name}' has shape {list(given.shape)}, the serving model "
                                  f"{list(want.shape)}; wrong architecture")
            if want.dtype.is_floating_point != given.dtype.is_floating_point or (
                    not want.dtype.is_floating_point and given.dtype != want.dtype):
                raise ConfigError(f"merged tensor '{name}' has dtype {given.dtype}, the serving model {want.dtype}; "
                                  "floating weights need floating values and integer buffers their own dtype")

    # -- inference ---------------------------------------------------------------------------------------------
    def predict(self, obs: Observation) -> ActionChunk:
        """Compute the action chunk for one observation (deterministic for the policy's seed).

        Raises:
            ConfigError: the observation does not fit `spec`.
        """
        return self.sample_chunks(obs, 1)[0]

    def sample_chunks(self, obs: Observation, k: int, noise_scale: float | None = None,
                      seed: int | None = None) -> list[ActionChunk]:
        """K action chunks for one observation from ONE batched forward (value-guided steering's candidates).

        The observation is repeated K times along the batch and the flow sampler gets K noise draws: draw 0 is the
        policy's own (what `predict` returns); draws 1..K-1 are standard-normal noise times `noise_scale` (None: 1,
        LeRobot's sampler), from `seed` (None: the policy's seed + 1).

        Raises:
            ConfigError: the observation does not fit `spec`, or k < 1.
        """
        if k < 1:
            raise ConfigError(f"sample_chunks needs k >= 1 samples, got {k}")
        validate_observation(obs, self.spec)
        # torch.from_numpy (inside LeRobot's helper) needs positive strides and a writable array; copy only if not
        frame = {key: np.require(obs.images[camera], requirements=["C", "W"]) for camera, key in self.io.images.items()}
        frame[STATE_KEY] = self.io.state_vector(obs)
        batch = self._prepare(frame, self.device, task=obs.instruction)
        noise = torch.randn(self._noise_shape, generator=torch.Generator().manual_seed(self.seed))
        if k > 1:
            generator = torch.Generator().manual_seed(self.seed + 1 if seed is None else int(seed))
            extra = torch.randn((k - 1, *self._noise_shape[1:]), generator=generator)
            noise = torch.cat([noise, extra * (1.0 if noise_scale is None else float(noise_scale))])
        with self._lock:
            batch = self.preprocessor(batch)
            if k > 1:
                batch = {key: _repeat(value, k) for key, value in batch.items()}
            actions = self.policy.predict_action_chunk(batch, noise=noise.to(self.device))
            actions = self.postprocessor(actions)
        raw = actions.detach().to("cpu", torch.float32).numpy()
        return [ActionChunk(np.ascontiguousarray(self.spec.action_space.clip(self.io.droid_actions(chunk))),
                            self.spec.dt_s, self.spec.action_space, int(obs.stamp_ns)) for chunk in raw]


def _repeat(value: object, k: int) -> object:
    """A batch-of-one entry repeated k times along the batch (tensors and lists; anything else as it is)."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == 1:
        return value.expand(k, *value.shape[1:])
    if isinstance(value, list) and len(value) == 1:
        return value * k
    return value


def _read_config(lerobot: dict, path: Path, device: str) -> object:
    """Read the checkpoint's LeRobot policy config and set it to run on `device`."""
    try:
        with _quiet():
            config = lerobot["PreTrainedConfig"].from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path / 'config.json'} is not a LeRobot policy config ({exc})") from None
    if config.type not in LEROBOT_TYPES:
        raise ConfigError(f"{path}: LeRobot policy type '{config.type}' is not served by this backend; use one of "
                          f"{', '.join(LEROBOT_TYPES)}")
    config.device = str(device)
    return config


def _check_mapping(io_mapping: LeRobotIO, config: object, source: str) -> None:
    """Check the camera/state/action mapping against the config's features (see `check_features`)."""
    inputs, outputs = config.input_features, config.output_features
    for warning in check_features(io_mapping, list(config.image_features),
                                  inputs[STATE_KEY].shape[0] if STATE_KEY in inputs else None,
                                  outputs[ACTION_KEY].shape[0] if ACTION_KEY in outputs else None,
                                  getattr(config, "max_state_dim", None), source=source):
        log.warning(warning)


def _processors(lerobot: dict, config: object, path: Path, device: str) -> tuple[object, object]:
    """Load LeRobot's pre/post-processors with the checkpoint's statistics; the preprocessor outputs on `device`."""
    overrides = {"device_processor": {"device": str(device)}}
    try:
        with _quiet():
            return lerobot["make_pre_post_processors"](config, pretrained_path=str(path),
                                                       preprocessor_overrides=overrides)
    except (OSError, ValueError, KeyError) as exc:
        names = _tokenizer_names(path / PREPROCESSOR_NAME)
        hint = (f"; the tokenizer it names ({', '.join(names)}) must be a local directory or in the Hugging Face "
                f"cache (fetch it once while online: `hf download {names[0]}`)") if names else ""
        raise ConfigError(f"{path}: LeRobot could not load the pre/post-processors ({exc}). Fix: the checkpoint "
                          f"needs {PREPROCESSOR_NAME}, {POSTPROCESSOR_NAME} and their .safetensors statistics"
                          f"{hint}") from None


def _tokenizer_names(preprocessor: Path) -> list[str]:
    """The tokenizers a saved LeRobot preprocessor loads by name (empty if the file cannot be read)."""
    try:
        steps = json.loads(preprocessor.read_text()).get("steps", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(s["config"]["tokenizer_name"]) for s in steps
            if isinstance(s, dict) and isinstance(s.get("config"), dict) and s["config"].get("tokenizer_name")]


def _checked_weights(policy: torch.nn.Module, weights: Path) -> dict[str, list[str]]:
    """Map the file's tensors onto the model and check the model holds exactly them.

    Raises:
        ConfigError: names that do not map, or a model tensor that differs from the file (LeRobot did not load it).
    """
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        names = list(f.keys())
        mapping = weight_map(policy, names, str(weights))
        state = policy.state_dict()
        for name, keys in mapping.items():
            stored = f.get_tensor(name)
            for key in keys:
                target = state[key]
                if tuple(target.shape) != tuple(stored.shape) or not torch.equal(
                        target, stored.to(device=target.device, dtype=target.dtype)):
                    raise ConfigError(f"{weights}: tensor '{name}' did not load into the model's '{key}' (shape "
                                      f"{list(stored.shape)} vs {list(target.shape)}); LeRobot's loader skipped it. "
                                      "Fix: config.json and model.safetensors must come from the same checkpoint")
    return mapping
