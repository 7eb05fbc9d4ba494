"""The reference VLA behind the Policy interface: checkpoint I/O, predict, and the atomic weight swap.

Checkpoint directory: config.json (type `retain_reference_vla` + every size), model.safetensors (float32 weights under
their module names), normalization.json (state/action statistics), tokenizer.json.

Thread model of the weight swap (double buffering): two modules exist, the serving one (`_model`) and a standby.
`predict` takes the serving reference under a short lock and counts itself as a user of that module until it
returns. `load_merged` waits until no predict still uses the standby (one that started before the previous swap),
copies the new tensors into it (no predict can pick the standby up meanwhile: new predicts take `_model`), then swaps
the two references under the lock. So a predict runs on the old or the new weights, never on a mix, and never waits
for a merge; a swap costs one copy of the weights (~1 ms here) instead of building a module.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from retain_ros.errors import ConfigError
from retain_ros.policy.configuration_reference import ReferenceVLAConfig
from retain_ros.policy.interface import ActionChunk, Observation, PolicySpec, validate_observation
from retain_ros.policy.modeling_reference import ReferenceVLA
from retain_ros.policy.processor_reference import NormalizationStats, ReferenceProcessor
from retain_ros.policy.registry import CONFIG_NAME, read_config
from retain_ros.policy.tokenizer import WordTokenizer

log = logging.getLogger(__name__)
WEIGHTS_NAME = "model.safetensors"


def check_state_dict(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str) -> None:
    """Check that `given` has exactly the names and shapes of `expected`.

    Raises:
        ConfigError: naming the first missing / extra / mis-shaped tensor and `source`.
    """
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing or extra:
        raise ConfigError(f"{source} does not fit the reference VLA of this config: {len(missing)} tensor(s) missing "
                          f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}). Fix: use a checkpoint "
                          "of the same architecture (config.json and weights must belong together)")
    for name, tensor in expected.items():
        if tuple(given[name].shape) != tuple(tensor.shape):
            raise ConfigError(f"{source}: tensor '{name}' has shape {list(given[name].shape)} but the model of this "
                              f"config needs {list(tensor.shape)}; wrong architecture or action dimension")
        if not given[name].dtype.is_floating_point:
            raise ConfigError(f"{source}: tensor '{name}' has dtype {given[name].dtype}; expected floating point")


class ReferencePolicy:
    """The built-in reference VLA as a `Policy`.

    Args:
        config: the model configuration.
        stats: normalisation statistics.
        model: the module (eval mode); a fresh random one when None.
        device: inference device.
        seed: seed of the sampling noise; every `predict` starts from the same noise, so the policy is deterministic.
        tokenizer: the instruction tokenizer (default vocabulary when None).
    """

    def __init__(self, config: ReferenceVLAConfig, stats: NormalizationStats, model: ReferenceVLA | None = None,
                 device: str = "cpu", seed: int = 0, tokenizer: WordTokenizer | None = None):
        self.config = config
        self.spec: PolicySpec = config.spec()
        self.device = torch.device(device)
        self.seed = int(seed)
        tokenizer = tokenizer or WordTokenizer(num_buckets=config.vocab_buckets, max_length=config.max_text_length)
        self.processor = ReferenceProcessor(config, stats, tokenizer)
        model = model if model is not None else ReferenceVLA(config)
        self._model = model.to(self.device).eval().requires_grad_(False)
        self._spares: dict[str, ReferenceVLA] = {}  # name -> spare copy (the standby built on the first load_merged)
        self._users: dict[int, int] = {}  # id(module) -> predicts running on it
        self._state = threading.Condition()  # guards _model, _spares and _users (held for microseconds)
        self._swap_lock = threading.Lock()  # serialises writers

    # -- checkpoints ---------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, device: str = "cpu", seed: int = 0,
                        io_mapping: object | None = None, dtype: str = "") -> ReferencePolicy:
        """Load a checkpoint directory into an eval-mode policy.

        `io_mapping` (the node's LeRobot feature mapping) is accepted and ignored: the reference VLA reads the DROID
        inputs by camera name and writes DROID actions. It runs in float32 (a few MB); `dtype` must stay ''.

        Raises:
            ConfigError: missing files, another model type, weights that do not fit the config, or a dtype.
        """
        if dtype:
            raise ConfigError(f"dtype '{dtype}' applies to LeRobot pi0 / pi0.5 checkpoints; the reference VLA runs in "
                              "float32: leave dtype empty")
        path = Path(checkpoint_dir)
        config = ReferenceVLAConfig.from_dict(read_config(path))
        stats = NormalizationStats.load(path, config.state_dim, config.action_dim)
        tokenizer = WordTokenizer.load(path)
        tensors = read_weights(path)
        policy = cls(config, stats, _module_from(config, tensors, str(path / WEIGHTS_NAME)), device, seed, tokenizer)
        return policy

    def save_pretrained(self, checkpoint_dir: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
        """Write config.json, model.safetensors, normalization.json and tokenizer.json into a directory."""
        path = Path(checkpoint_dir)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        state = {n: t.detach().to("cpu").contiguous() for n, t in self._model.state_dict().items()}
        save_file(state, path / WEIGHTS_NAME, metadata={"format": "pt", **(metadata or {})})
        (path / WEIGHTS_NAME).chmod(0o644)  # safetensors writes 0600; checkpoints are shared files
        self.processor.stats.save(path)
        self.processor.tokenizer.save(path)
        return path

    # -- weights ---------------------------------------------------------------------------------------------------
    @property
    def model(self) -> ReferenceVLA:
        """The serving module (do not modify it in place while predict may run)."""
        return self._model

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(checkpoint name, tensor) of every weight of the serving module."""
        return iter(self._model.state_dict().items())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Checkpoint name -> tensor of the serving module."""
        return dict(self._model.state_dict())

    def weight_targets(self, which: str = "standby") -> dict[str, list[torch.Tensor]]:
        """Checkpoint name -> the tensor to write, for one copy of the weights.

        'serving': the serving copy, only while no predict runs (`Policy.weight_targets`). Any other name: that spare
        copy, which `promote_standby(which)` makes serve (made on first use; waits until a predict that started on it
        before it was last promoted away has returned).
        """
        if which == "serving":
            module = self._model
        else:
            if which not in self._spares:
                spare = copy.deepcopy(self._model)  # the serving module is only read here
                with self._state:
                    self._spares.setdefault(which, spare)
            with self._state:
                module = self._spares[which]
                # A predict that took this module before it was promoted away may still run on it: let it finish.
                self._state.wait_for(lambda: self._users.get(id(module), 0) == 0)
        return {name: [tensor] for name, tensor in module.state_dict().items()}

    def promote_standby(self, which: str = "standby") -> None:
        """Serve spare copy `which` from the next predict on (one reference swap); the old copy becomes that spare."""
        with self._state:
            if which not in self._spares:
                raise RuntimeError(f"promote_standby('{which}') without that spare copy; call weight_targets() first")
            self._spares[which], self._model = self._model, self._spares[which]

    def release_standby(self, which: str | None = None) -> None:
        """Free spare copy `which`, or every spare copy (made again on the next `weight_targets()`)."""
        with self._state:
            if which is None:
                self._spares.clear()
            else:
                self._spares.pop(which, None)

    def spare_copies(self) -> tuple[str, ...]:
        """The names of the spare copies that exist now."""
        with self._state:
            return tuple(self._spares)

    def load_merged(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Serve `tensors` (e.g. `MergedWeights.tensors`) from the next predict on; one atomic swap.

        The tensors are copied into the standby module, so the caller may reuse its buffers afterwards. Blocks at
        most until a predict that started before the previous swap returns.

        Raises:
            ConfigError: names or shapes do not fit; the previous weights keep serving.
        """
        with self._swap_lock:
            check_state_dict(self._model.state_dict(), tensors, "merged weights")
            with torch.no_grad():
                for name, (target,) in self.weight_targets("standby").items():
                    target.copy_(tensors[name])
            self.promote_standby()

    # -- inference ------------------------------------------------------------------------------------------------
    def sampling_noise(self, noise_scale: float | None = None) -> torch.Tensor:
        """The flow sampler's starting point (1, H, D): the seed's noise times `noise_scale` (None: the config's)."""
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((1, self.config.horizon, self.config.action_dim), generator=generator)
        return noise * (self.config.noise_scale if noise_scale is None else noise_scale)

    def predict(self, obs: Observation) -> ActionChunk:
        """Compute the action chunk for one observation (deterministic for the policy's seed).

        Raises:
            ConfigError: the observation does not fit `spec`.
        """
        return self.sample_chunks(obs, 1)[0]

    def sample_chunks(self, obs: Observation, k: int, noise_scale: float | None = None,
                      seed: int | None = None) -> list[ActionChunk]:
        """K action chunks for one observation from ONE batched forward (value-guided steering's candidates).

        The prefix (cameras + instruction) is encoded once and the flow is integrated for K noise draws side by side.
        Draw 0 is the policy's own (the chunk `predict` returns); draws 1..K-1 are fresh standard-normal noise times
        `noise_scale` (None: the config's), from `seed` (None: the policy's seed), so a call is repeatable.

        Raises:
            ConfigError: the observation does not fit `spec`, or k < 1.
        """
        if k < 1:
            raise ConfigError(f"sample_chunks needs k >= 1 samples, got {k}")
        validate_observation(obs, self.spec)
        inputs = {key: v.to(self.device) for key, v in self.processor.observation_inputs(obs).items()}
        noise = self.sampling_noise()
        if k > 1:
            scale = self.config.noise_scale if noise_scale is None else float(noise_scale)
            generator = torch.Generator().manual_seed(self.seed + 1 if seed is None else int(seed))
            extra = torch.randn((k - 1, self.config.horizon, self.config.action_dim), generator=generator) * scale
            noise = torch.cat([noise, extra])
        with self._state:
            model = self._model  # load_merged leaves this module alone until we are done with it
            self._users[id(model)] = self._users.get(id(model), 0) + 1
        try:
            with torch.no_grad():
                actions = model.sample(inputs["images"], inputs["token_ids"], inputs["token_mask"], inputs["state"],
                                       noise.to(self.device))
        finally:
            with self._state:
                self._users[id(model)] -= 1
                self._state.notify_all()
        chunks = self.processor.unnormalize_actions(actions)
        return [ActionChunk(chunk, self.config.dt_s, self.config.action_space, int(obs.stamp_ns)) for chunk in chunks]


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory's model.safetensors.

    Raises:
        ConfigError: the file is missing or not safetensors.
    """
    try:
        return load_file(directory / WEIGHTS_NAME)
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no {WEIGHTS_NAME}") from None
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{directory / WEIGHTS_NAME} cannot be read as safetensors ({exc})") from None


def _module_from(config: ReferenceVLAConfig, tensors: Mapping[str, torch.Tensor], source: str,
                 device: torch.device | str = "cpu") -> ReferenceVLA:
    """A new eval-mode module whose parameters are copies of `tensors` (checked first)."""
    with torch.device("meta"):
        module = ReferenceVLA(config)
    check_state_dict(module.state_dict(), tensors, source)
    # One fresh, aligned copy per tensor: the module owns its weights (the caller may reuse its buffers, e.g. the
    # ResidentMerger's output views), and kernels see the same memory layout as after a fresh init, so a loaded model
    # reproduces the saved one bit for bit. A copy of this model's few MB costs well under a millisecond.
    state = {n: t.detach().to(device=device, dtype=torch.float32, copy=True, memory_format=torch.contiguous_format)
             for n, t in tensors.items()}
    module.requires_grad_(False).load_state_dict(state, strict=True, assign=True)
    return module.eval()


def random_policy(config: ReferenceVLAConfig | None = None, seed: int = 0,
                  stats: NormalizationStats | None = None) -> ReferencePolicy:
    """An untrained policy with seeded weights (tests, benchmarks, pretraining start)."""
    config = config or ReferenceVLAConfig()
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        model = ReferenceVLA(config)
    stats = stats or NormalizationStats.identity(config.state_dim, config.action_dim)
    return ReferencePolicy(config, stats, model, seed=seed)


def example_observation(spec: PolicySpec, seed: int = 0, size: tuple[int, int] | None = None) -> Observation:
    """A random but well-formed observation for a spec (tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    h, w = size or spec.image_size
    images = {name: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for name in spec.camera_names}
    return Observation(images, rng.uniform(-1, 1, spec.num_joints), 0.0, "pick up the red cube", 123)
