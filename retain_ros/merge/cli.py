"""`retain-merge`: interpolate a pretrained VLA with finetuned copies into a new checkpoint (RETAIN)."""

from __future__ import annotations

import argparse
import logging
import sys

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.errors import ConfigError
from retain_ros.merge.groups import AUTO, builtin_preset_names, load_preset
from retain_ros.merge.maths import MODES, SEQUENTIAL, AlphaSpec
from retain_ros.merge.plan import MergePlan, plan_merge
from retain_ros.merge.provenance import format_record, read_record
from retain_ros.merge.streaming import merge_to_disk
from retain_ros.merge.statistics import STATS_CHOICES, processor_files, statistics_source

EPILOG = """\
examples:
  # one new skill, everything at alpha 0.5 (the preset is detected from the parameter names)
  retain-merge pi0_base/ pi0_task_ft/ --alpha 0.5 --out merged/
  # modality-specific: merge only the language backbone, keep vision and action expert finetuned
  retain-merge base/ ft/ --alpha 1 --group-alpha language=0.5 --groups pi0 --out merged/
  # two skills learnt one after the other (ft2 was finetuned from the first merge): sequential merge
  retain-merge base/ ft1/ ft2/ --alpha 0.5,0.7 --out merged/
  # see the groups and their sizes without merging; print what a merged checkpoint was made from
  retain-merge base/ ft/ --alpha 0.5 --dry-run
  retain-merge --inspect merged/

theta = (1 - alpha) * theta_pre + alpha * theta_ft: alpha 0 gives the pretrained model back, 1 the finetuned one.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retain-merge", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Merge a pretrained VLA checkpoint with one or more finetuned copies (RETAIN weight "
                    "interpolation), per parameter group, in bounded memory, with provenance recorded in the output.")
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                   help="BASE then FINETUNED [FINETUNED ...]: checkpoint directories (config.json + model.safetensors "
                        "or shards + index), .safetensors files, or .pt/.bin state dicts")
    p.add_argument("--alpha", help="weight of the finetuned model in [0, 1]; one value, or one per finetuned "
                                   "checkpoint separated by commas")
    p.add_argument("--group-alpha", action="append", default=[], metavar="GROUP=A",
                   help="alpha for one parameter group (e.g. language=0.25); repeatable; overrides --alpha")
    p.add_argument("--groups", default=AUTO, metavar="PRESET|YAML",
                   help=f"group preset: one of {', '.join(builtin_preset_names())}, a YAML file, or 'auto' (default: "
                        "the shipped preset that covers every name, else one group 'all')")
    p.add_argument("--mode", choices=MODES, default=SEQUENTIAL,
                   help="several finetuned checkpoints: 'sequential' continual merge (paper Eq. 4, default) or "
                        "'task-arithmetic' (theta_pre + sum alpha_i (theta_i - theta_pre))")
    p.add_argument("--out", help="output checkpoint directory (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output (after the new one is complete)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the inputs and print per-group tensor/parameter counts and unmatched names; no merge")
    p.add_argument("--allow-dtype-cast", action="store_true",
                   help="accept floating tensors stored in different dtypes (merged in float32, stored as the base)")
    p.add_argument("--stats", choices=STATS_CHOICES, default="",
                   help="LeRobot checkpoints whose normalisation statistics differ (lerobot-train saves the "
                        "finetuning data's): carry the base's or the finetuned's into the output; without it, "
                        "differing statistics are refused (recorded in the provenance either way)")
    p.add_argument("--inspect", metavar="DIR", help="print the provenance of a merged checkpoint and exit")
    p.add_argument("--list-presets", action="store_true", help="list the shipped group presets and exit")
    p.add_argument("--no-hash-cache", action="store_true",
                   help="hash every input again instead of reusing digests of unchanged files from earlier merges")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def parse_alpha(text: str, what: str) -> tuple[float, ...]:
    """Parse '0.5' or '0.25,0.5,0.75' into floats (range checks happen where the alphas are used).

    Shared by every tool that takes alphas on its command line (retain-merge, retain-eval).

    Raises:
        ConfigError: a value that is not a number, naming the option.
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise ConfigError(f"{what}: expected a number in [0, 1] or a comma-separated list (e.g. 0.25,0.5,0.75), "
                          f"got '{text}'")
    return values


def parse_group_alpha(items: list[str], option: str = "--group-alpha") -> dict[str, tuple[float, ...]]:
    """Parse repeated `--group-alpha GROUP=A[,A2...]` options into group -> alphas.

    Raises:
        ConfigError: an item without GROUP= or with a value that is not a number.
    """
    group_alpha = {}
    for item in items:
        group, sep, value = item.partition("=")
        if not sep or not group.strip():
            raise ConfigError(f"{option} expects GROUP=ALPHA (e.g. language=0.25), got '{item}'")
        group_alpha[group.strip()] = parse_alpha(value, f"{option} {group}")
    return group_alpha


def parse_one_group_alpha(items: list[str], option: str, why: str) -> dict[str, float]:
    """Parse repeated `GROUP=A` options that allow one alpha per group (`why` says what that one alpha is for).

    Raises:
        ConfigError: a bad item (as `parse_group_alpha`), or several values for a group.
    """
    group_alpha = {}
    for group, values in parse_group_alpha(items, option).items():
        if len(values) != 1:
            raise ConfigError(f"{option} {group}: give one value {why}, got {list(values)}")
        group_alpha[group] = values[0]
    return group_alpha


def alpha_spec_from_args(args: argparse.Namespace) -> AlphaSpec:
    if args.alpha is None:
        raise ConfigError("--alpha is required (0 = pretrained, 1 = finetuned; RETAIN typically uses 0.25-0.75)")
    return AlphaSpec(parse_alpha(args.alpha, "--alpha"), parse_group_alpha(args.group_alpha))


def format_plan(plan: MergePlan) -> str:
    """The dry-run table: per group, alpha, tensors, parameters and example names; then unmatched names."""
    lines = [f"base:       {plan.base.describe()}"]
    lines += [f"finetuned:  {ft.describe()}" for ft in plan.finetuned]
    lines.append(f"preset:     {plan.preset.name} ({plan.preset.source})    mode: {plan.mode}")
    lines.append(f"{'group':<14}{'alpha':<12}{'tensors':>8}{'parameters':>14}  examples")
    for group, stat in plan.group_stats().items():
        alphas = ",".join(f"{a:g}" for a in plan.alphas.get(group, ()))
        examples = ", ".join(stat["examples"])
        lines.append(f"{group:<14}{alphas:<12}{stat['tensors']:>8}{stat['parameters'] / 1e6:>13.2f}M  {examples}")
    unmatched = plan.assignment.unmatched
    if unmatched:
        lines.append(f"unmatched:  {len(unmatched)} name(s) match no rule:")
        lines += [f"  {n}" for n in unmatched[:50]]
    for warning in plan.warnings:
        lines.append(f"warning:    {warning}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name in builtin_preset_names():
            preset = load_preset(name)
            print(f"{name:<12} groups: {', '.join(preset.groups):<40} {preset.description}")
        return 0
    if args.inspect:
        print(format_record(read_record(args.inspect)))
        return 0
    if len(args.checkpoints) < 2:
        raise ConfigError("give BASE and at least one FINETUNED checkpoint (see --help)")
    spec = alpha_spec_from_args(args)
    if not args.dry_run and not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    plan = plan_merge(args.checkpoints[0], args.checkpoints[1:], spec, args.groups, args.mode,
                      args.allow_dtype_cast, require_complete=not args.dry_run)
    try:
        _choose_statistics(plan, args.stats)
        if args.dry_run:
            print(format_plan(plan))
            return 2 if plan.assignment.unmatched else 0
        print(format_plan(plan))
        result = _merge_with_progress(plan, args)
    finally:
        plan.close()
    size_gb = result.bytes_written / 1e9
    print(f"\nmerged {len(plan.inputs)} checkpoints -> {result.out} ({len(result.files)} file(s), {size_gb:.3f} GB) "
          f"in {result.seconds:.2f} s ({result.bytes_written / 1e6 / max(result.seconds, 1e-9):.0f} MB/s written)")
    print(f"provenance: {result.out / 'retain_merge.json'} (retain-merge --inspect {result.out})")
    return 0


def _choose_statistics(plan: MergePlan, choice: str) -> None:
    """Refuse differing LeRobot statistics unless chosen; carry the chosen checkpoint's processors into the output."""
    source, plan.statistics = statistics_source(plan.base.path, [f.path for f in plan.finetuned], choice,
                                                "--stats base|finetuned")
    if source != plan.base.path:
        ours = {p.name for p in processor_files(plan.base.path)}
        plan.base.carry_over = sorted([p for p in plan.base.carry_over if p.name not in ours]
                                      + processor_files(source))


def _merge_with_progress(plan: MergePlan, args: argparse.Namespace):
    from tqdm import tqdm

    total = sum(s.numel * s.dtype.itemsize for s in plan.base.specs.values())
    with tqdm(total=total, unit="B", unit_scale=True, desc="merging", disable=args.quiet or None,
              file=sys.stderr, mininterval=0.5) as bar:
        return merge_to_disk(plan, args.out, force=args.force, progress=bar.update, hash_cache=not args.no_hash_cache)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="retain-merge: %(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_reporting_errors("retain-merge", lambda: run(args), "interrupted; no output was written")


if __name__ == "__main__":
    sys.exit(main())
