"""Where the package's shared files (config/, launch/, msg/) live: the source tree, a pip or a colcon install."""

from __future__ import annotations

import sys
from pathlib import Path

from retain_ros.errors import ConfigError

PACKAGE = "retain_ros"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """Return the directory that holds `config/` and `launch/`.

    Order: the source checkout (editable installs, tests), then ament's share directory (colcon on a robot PC), then
    the pip data_files location under sys.prefix.
    """
    if (_SOURCE_ROOT / "config").is_dir() and (_SOURCE_ROOT / "package.xml").is_file():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError):
        pass
    return Path(sys.prefix) / "share" / PACKAGE


def config_dir() -> Path:
    """Return the directory of parameter files and group presets."""
    return share_dir() / "config"


def embedded_models_dir() -> Path:
    """Return the directory of the embedded reference checkpoints (base, task_ft, co_ft), shipped as package data."""
    return Path(__file__).resolve().parent / "models"


def msg_dir() -> Path:
    """Return the directory of the package's message definitions (retain_ros_msgs' .msg files)."""
    return share_dir() / "msg"


def resolve_checkpoint(path: str, root: str) -> str:
    """Resolve a checkpoint path (relative paths are taken inside `root`) and check it may be loaded.

    Args:
        path: the path a user gave.
        root: `checkpoint_root`; empty = no restriction.

    Returns:
        The resolved absolute path.

    Raises:
        ConfigError: empty path, missing file or directory, or a path outside `root` (symlinks resolved).
    """
    if not path:
        raise ConfigError("checkpoint path is empty; give a checkpoint directory or .safetensors file")
    p = Path(path).expanduser()
    if root and not p.is_absolute():
        p = Path(root).expanduser() / p
    p = p.resolve()
    if root:
        root_p = Path(root).expanduser().resolve()
        if not p.is_relative_to(root_p):
            raise ConfigError(f"checkpoint '{path}' resolves to {p}, outside checkpoint_root {root_p}; loads outside "
                              "it are refused. Fix: move the checkpoint under checkpoint_root or change it at start-up")
    if not p.exists():
        raise ConfigError(f"checkpoint '{path}' does not exist (looked at {p})")
    return str(p)
