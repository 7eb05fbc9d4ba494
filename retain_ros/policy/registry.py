"""Policy backends by checkpoint `type` (one registry for the family, as rosetta's `policies/registry.py`).

A backend registers a loader under the `type` string its checkpoints write into config.json; `load_policy` reads that
field and calls the loader. Loaders are imported lazily, so listing the known types costs nothing.
"""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from retain_ros.errors import ConfigError

CONFIG_NAME = "config.json"


def read_config(checkpoint_dir: str | Path) -> dict:
    """Read a checkpoint directory's config.json.

    Raises:
        ConfigError: the directory or its config.json is missing or not JSON.
    """
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise ConfigError(f"policy checkpoint directory not found: {path} (give a directory holding config.json and "
                          "model.safetensors)")
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} has no {CONFIG_NAME}; a policy checkpoint holds config.json + model.safetensors")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path / CONFIG_NAME} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path / CONFIG_NAME} must hold a JSON object")
    return config


def config_from_dict(cls: type, data: dict, noun: str):
    """Build the config dataclass `cls` from config.json contents, refusing unknown fields by name.

    Args:
        cls: the dataclass.
        data: the parsed config.json.
        noun: what the config describes, for messages ('reference-VLA').

    Raises:
        ConfigError: unknown or invalid fields.
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config.json has unknown {noun} fields {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {noun} config: {exc}") from None


class PolicyRegistry:
    """type name -> 'module:attribute' of a loader `(checkpoint_dir, device, **kwargs) -> Policy`."""

    def __init__(self) -> None:
        self._loaders: dict[str, str] = {}

    def register(self, type_name: str, target: str) -> None:
        """Register the loader `target` ('package.module:callable') for checkpoints whose config type is `type_name`."""
        self._loaders[type_name] = target

    def names(self) -> list[str]:
        """The known checkpoint types."""
        return sorted(self._loaders)

    def loader(self, type_name: str) -> Callable:
        """The loader for one type.

        Raises:
            ConfigError: unknown type, listing the known ones and the closest.
        """
        if type_name not in self._loaders:
            close = difflib.get_close_matches(str(type_name), self.names(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown policy type '{type_name}' in config.json{hint} known types: "
                              f"{', '.join(self.names())}")
        module, _, attr = self._loaders[type_name].partition(":")
        target = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        return target

    def load(self, checkpoint_dir: str | Path, device: str = "cpu", **kwargs: object):
        """Load the policy of a checkpoint directory by its config.json `type`."""
        config = read_config(checkpoint_dir)
        if "type" not in config:
            raise ConfigError(f"{Path(checkpoint_dir) / CONFIG_NAME} has no 'type' field; known types: "
                              f"{', '.join(self.names())}")
        return self.loader(config["type"])(checkpoint_dir, device=device, **kwargs)


POLICIES = PolicyRegistry()
POLICIES.register("retain_reference_vla", "retain_ros.policy.reference_policy:ReferencePolicy.from_pretrained")
# LeRobot checkpoints, under the `type` LeRobot writes into config.json; LeRobot is imported only when one loads.
POLICIES.register("pi0", "retain_ros.policy.lerobot_policy:LeRobotPolicy.from_pretrained")
POLICIES.register("pi05", "retain_ros.policy.lerobot_policy:LeRobotPolicy.from_pretrained")
POLICIES.register("smolvla", "retain_ros.policy.lerobot_policy:LeRobotPolicy.from_pretrained")
