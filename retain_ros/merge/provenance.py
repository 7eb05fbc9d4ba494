"""What a merged checkpoint records about how it was made, and how `retain-merge --inspect` shows it.

The same record goes into `retain_merge.json` beside the weights and into every output safetensors file's
`__metadata__` (key `retain_merge`), so a lone copied shard still says what it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from retain_ros import __version__
from retain_ros.errors import ConfigError
from retain_ros.merge.checkpoint import PROVENANCE_NAME
from retain_ros.merge.plan import MergePlan
from retain_ros.merge.safetensors_io import read_header

METADATA_KEY = "retain_merge"
_HEX_LEN = 64


def placeholder(index: int) -> str:
    """A unique stand-in for a sha256 hex digest that is written before the digest is known (same length)."""
    return f"sha256-pending-{index:0{_HEX_LEN - 15}d}"


def build_record(plan: MergePlan, digests: dict[Path, str] | None) -> dict:
    """The provenance record of a merge; with `digests` None, each sha256 is a placeholder to patch later."""
    inputs, slot = [], 0
    for role_index, checkpoint in enumerate(plan.inputs):
        files = []
        for file in checkpoint.files:
            sha = digests[file] if digests is not None else placeholder(slot)
            inside = checkpoint.path.is_dir() and file.is_relative_to(checkpoint.path)  # openpi: files in subfolders
            name = str(file.relative_to(checkpoint.path)) if inside else file.name
            files.append({"name": name, "size": file.stat().st_size, "sha256": sha})
            slot += 1
        role = "base" if role_index == 0 else f"finetuned[{role_index}]"
        inputs.append({"role": role, "path": str(checkpoint.path.resolve()), "kind": checkpoint.kind, "files": files})
    stats = plan.group_stats()
    return {
        "tool": "retain_ros.merge",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": plan.mode,
        "preset": {"name": plan.preset.name, "source": plan.preset.source, "groups": list(plan.preset.groups)},
        "alphas": {g: list(a) for g, a in plan.alphas.items()},
        "coefficients": {g: list(c) for g, c in plan.coeffs.items()},
        "groups": {g: {"tensors": s["tensors"], "parameters": s["parameters"]} for g, s in stats.items()},
        "inputs": inputs,
        "tied": plan.tied,
        "integer_from_base": plan.integer_from_base,
        "warnings": list(plan.warnings),
        "statistics": plan.statistics,
    }


def placeholders_for(plan: MergePlan, digests: dict[Path, str]) -> dict[str, str]:
    """Map each placeholder written into the headers to its real digest."""
    files = [file for checkpoint in plan.inputs for file in checkpoint.files]
    return {placeholder(i): digests[file] for i, file in enumerate(files)}


def write_record(out_dir: Path, record: dict) -> None:
    (out_dir / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n")


def read_record(path: str | Path) -> dict:
    """Read the provenance of a merged checkpoint directory or safetensors file.

    Raises:
        ConfigError: the path has no merge provenance (it was not written by retain-merge).
    """
    path = Path(path)
    if path.is_dir() and (path / PROVENANCE_NAME).is_file():
        return json.loads((path / PROVENANCE_NAME).read_text())
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    for file in files:
        metadata = read_header(file).metadata
        if METADATA_KEY in metadata:
            return json.loads(metadata[METADATA_KEY])
    raise ConfigError(f"{path}: no merge provenance found (no {PROVENANCE_NAME} and no '{METADATA_KEY}' metadata); "
                      "it was not written by retain-merge")


def format_record(record: dict) -> str:
    """A one-screen, human-readable rendering of a provenance record."""
    lines = [f"merged by {record['tool']} {record['version']} at {record['created']}",
             f"mode: {record['mode']}    preset: {record['preset']['name']} ({record['preset']['source']})",
             "inputs:"]
    for entry in record["inputs"]:
        lines.append(f"  {entry['role']:<13} {entry['path']} ({entry['kind']})")
        for f in entry["files"]:
            lines.append(f"      {f['name']}  {f['size'] / 1e6:.1f} MB  sha256 {f['sha256']}")
    lines.append("groups:")
    for group, stat in record["groups"].items():
        alphas = ", ".join(f"{a:g}" for a in record["alphas"].get(group, []))
        lines.append(f"  {group:<14} alpha {alphas:<12} {stat['tensors']:>6} tensors "
                     f"{stat['parameters'] / 1e6:>10.2f}M parameters")
    for names in record.get("tied", []):
        lines.append(f"tied: {', '.join(names)}")
    for warning in record.get("warnings", []):
        lines.append(f"warning: {warning}")
    stats = record.get("statistics")
    if stats:
        differ = f" (they differ: {stats['differ']})" if stats.get("differ") else ""
        lines.append(f"normalisation statistics: {stats['choice']}, from {stats['source']}{differ}")
    return "\n".join(lines)
