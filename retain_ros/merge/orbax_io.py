"""openpi checkpoints: the orbax `params` directory, read into named tensors and written back (needs .venv-openpi).

openpi saves a model's parameters as one orbax PyTree item `{"params": tree}` (`ocp.PyTreeCheckpointer`, OCDBT
files); a training checkpoint's step directory holds it as `params/` beside `assets/` (normalisation statistics) and
`train_state/`. Training checkpoints store nnx.State leaves, whose key paths end in `value`; openpi's
`restore_params` drops that suffix, and so does `read_params`, which names each leaf by its key path joined with '/'
(`PaliGemma/llm/layers/attn/q_einsum_1/w`: the `pi0_openpi` preset's names). `write_params` puts the suffix back where
the input had it, so the output is laid out exactly as the base.

Orbax restores whole arrays, so an orbax input is held in memory (as the PyTorch state-dict path is); only the
safetensors path streams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retain_ros.errors import ConfigError

ITEM = "params"
NNX_SUFFIX = "value"
MARKERS = ("_METADATA", "manifest.ocdbt", "_CHECKPOINT_METADATA")  # files an orbax PyTree directory holds


def is_params_dir(path: Path) -> bool:
    """Whether `path` is an orbax PyTree directory (an openpi `params/`)."""
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


def params_dir_of(path: Path) -> Path | None:
    """The orbax `params` directory a user named: the directory itself, or its `params/` (a step directory)."""
    if is_params_dir(path):
        return path
    if is_params_dir(path / ITEM):
        return path / ITEM
    return None


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ConfigError("openpi checkpoints (orbax params directories) need orbax-checkpoint and JAX, which live in "
                          "the openpi environment: `make openpi-env`, then run .venv-openpi/bin/retain-merge") from None
    return ocp


def read_params(params_dir: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Every leaf of an openpi params directory as a CPU tensor (its stored dtype), and whether keys end in `value`.

    Raises:
        ConfigError: not an orbax PyTree with a `params` item, or an unreadable / non-numeric leaf.
    """
    ocp = _ocp()
    import jax

    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            metadata = checkpointer.metadata(params_dir)
            tree = metadata.item_metadata if hasattr(metadata, "item_metadata") else metadata
            tree = getattr(tree, "tree", tree)
            if not isinstance(tree, dict) or ITEM not in tree:
                raise ConfigError(f"cannot read the openpi params directory {params_dir}: orbax finds no '{ITEM}' "
                                  "item in it (a damaged directory, or not openpi's layout {'params': ...})")
            item = {ITEM: tree[ITEM]}
            restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), item)
            restored = checkpointer.restore(params_dir, args=ocp.args.PyTreeRestore(item=item,
                                                                                    restore_args=restore_args))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001  (orbax / tensorstore raise many types for a broken directory)
        raise ConfigError(f"cannot read the openpi params directory {params_dir}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    flat = _flatten(restored[ITEM])
    nnx = bool(flat) and all(key.endswith("/" + NNX_SUFFIX) for key in flat)
    if nnx:
        flat = {key[: -len(NNX_SUFFIX) - 1]: value for key, value in flat.items()}
    return {name: _to_tensor(name, value) for name, value in flat.items()}, nnx


def write_params(params_dir: Path, tensors: dict[str, torch.Tensor], nnx: bool) -> None:
    """Write `tensors` (names as `read_params` gives them) as an openpi params directory at `params_dir` (new).

    Raises:
        ConfigError: orbax refused to write (the message says why).
    """
    ocp = _ocp()
    tree: dict = {}
    for name, tensor in tensors.items():
        keys = name.split("/") + ([NNX_SUFFIX] if nnx else [])
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _to_numpy(tensor)
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(params_dir, args=ocp.args.PyTreeSave({ITEM: tree}))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot write the openpi params directory {params_dir}: {type(exc).__name__}: {exc}") \
            from None


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}/"))
        return out
    return {prefix[:-1]: tree}


def _to_tensor(name: str, value: object) -> torch.Tensor:
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: same bits as torch's
        return torch.from_numpy(np.ascontiguousarray(array).view(np.uint16)).view(torch.bfloat16)
    if array.dtype.kind not in "fiub":
        raise ConfigError(f"openpi param '{name}' has dtype {array.dtype}; only numeric arrays can be merged")
    return torch.from_numpy(np.ascontiguousarray(array))


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.contiguous().view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.contiguous().numpy()
