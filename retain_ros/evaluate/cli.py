"""`retain-eval`: evaluate policies and RETAIN merges.

Subcommands: `sim` (closed loop), `bag` (offline), `replay`, `trace` (where closed-loop episodes stall).

Each subcommand registers itself in `SUBCOMMANDS` with a function that adds its parser; more (bag replay, live
replay) plug in the same way. Exit codes: 0 ok, 2 a user error (message on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

import torch

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.errors import ConfigError
from retain_ros.merge.cli import parse_alpha, parse_one_group_alpha
from retain_ros.paths import embedded_models_dir

log = logging.getLogger("retain_ros.evaluate")


def add_sim_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval sim`."""
    from retain_ros.sim.variations import OOD_VARIATIONS

    models = embedded_models_dir()
    p = sub.add_parser("sim", help="closed-loop comparison in the simulator: base, task-FT, co-FT, RETAIN merges",
                       description="Closed-loop success of base, task-FT, co-FT and RETAIN merges on the target task "
                                   "(id and OOD families) and on the generalist suite; writes report.md, "
                                   "report.json and alpha_sweep.png.")
    p.add_argument("--base", default=str(models / "base"), help="pretrained checkpoint (default: embedded)")
    p.add_argument("--task-ft", default=str(models / "task_ft"), help="task-finetuned checkpoint (default: embedded)")
    p.add_argument("--co-ft", default=str(models / "co_ft"), help="co-finetuned checkpoint (default: embedded)")
    p.add_argument("--target", default="push_red_to_purple", help="target task the finetuned models learnt")
    p.add_argument("--alpha", default="0.25,0.5,0.75,0.9", help="RETAIN alphas (comma-separated)")
    p.add_argument("--target2", help="a second target task, learnt after the first: adds its column (e.g. "
                                     "place_red_and_blue_on_yellow)")
    p.add_argument("--task-ft2", help="finetuned on --target2 starting from the first skill's merge (base + "
                                      "task-FT or co-FT, --skill-recipe, at the first --skill-alphas value): adds "
                                      "'task-FT 2' (or 'co-FT 2') and the two-skill sequential merge (paper Eq. 4)")
    p.add_argument("--task-ft2-single", help="finetuned on --target2 starting from the base: adds the second "
                                             "skill's single-skill rows (its finetune and its merge at the second "
                                             "--skill-alphas value), with or without --task-ft2")
    p.add_argument("--skill-recipe", choices=("task_ft", "co_ft"), default="task_ft",
                   help="how both skills were learnt: the two-skill merge starts from base + --task-ft (task_ft) or "
                        "base + --co-ft (co_ft), and the second skill's rows are labelled 'task-FT 2' or 'co-FT 2'")
    p.add_argument("--skill-alphas", default="0.9,0.9", metavar="A1,A2",
                   help="alphas of the two-skill merge: the first skill's (the merge --task-ft2 was finetuned "
                        "from) and the second's")
    p.add_argument("--skill2-group-alpha", action="append", default=[], metavar="GROUP=A2",
                   help="the second skill's alpha for one parameter group (vision, language, action) in the "
                        "two-skill and the single-skill merge, the others at the second --skill-alphas value; "
                        "repeatable, e.g. language=1 (the first skill's merge stays uniform)")
    p.add_argument("--language-alpha", type=float, default=0.5,
                   help="alpha of the language backbone in the modality-specific rows (vision, action at 1)")
    p.add_argument("--instruction-alphas", nargs="+", metavar="PATTERN=SPEC",
                   help="add a 'routed' row: each task served at the recipe of its instruction, as the node's "
                        "instruction_alphas parameter serves it (first match wins; no match: the base), e.g. "
                        "'push the red cube onto the purple plate=0.9' '.*=0'")
    p.add_argument("--routed-finetuned", choices=("task_ft", "co_ft"), default="task_ft",
                   help="the finetuned checkpoint the routed row merges")
    p.add_argument("--rows", help="evaluate only the rows whose name this regular expression finds, e.g. "
                                  "'^(base|task-FT|routed.*)$' (row names: report.md's first column)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per target cell (id, each OOD family)")
    p.add_argument("--generalist-episodes", type=int, default=5, help="episodes per generalist task")
    p.add_argument("--ood", default=",".join(OOD_VARIATIONS), help="OOD variation families (comma-separated)")
    p.add_argument("--generalist", help="generalist tasks (comma-separated; default: the whole suite)")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed (away from the training seeds)")
    p.add_argument("--execute-steps", type=int, default=8, help="actions executed per chunk before re-querying")
    p.add_argument("--execution", choices=("chunk", "stream"), default="chunk",
                   help="the node's execution mode: one trajectory per chunk, or one re-anchored step per period")
    p.add_argument("--image-size", type=int, default=64, help="rendered camera image side")
    p.add_argument("--workers", type=int, default=1, help="worker processes (one torch thread each)")
    p.add_argument("--max-steps", type=int, help="cap on episode length (default: each task's own limit)")
    p.add_argument("--steering", choices=("value", "random"),
                   help="add a steered row for the base and every RETAIN row: '<row> + V-GPS' (argmax of the value "
                        "function over K samples) or '<row> + random' (one of the K samples: data collection and "
                        "the control for V-GPS)")
    p.add_argument("--steering-checkpoint", help="value function of the V-GPS rows (written by retain-train value; "
                                                 "default with --steering value: the embedded one)")
    p.add_argument("--steering-samples", type=int, default=10, help="chunks sampled per query in steered rows (K)")
    p.add_argument("--steering-noise", type=float,
                   help="sampling noise scale of steered rows (default: the value function's; random rows: 1)")
    p.add_argument("--record", metavar="DIR", help="record every episode (images, state, the K samples, the "
                                                   "executed one, success) into DIR for retain-train value")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sim)


def add_combine_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval combine`."""
    p = sub.add_parser("combine", help="one report from several `retain-eval sim` runs of the same settings",
                       description="Combine `retain-eval sim` runs that evaluated different rows (--rows) with the "
                                   "same settings into one report.md / report.json / alpha_sweep.png; runs whose "
                                   "settings differ, or that share a row, are refused.")
    p.add_argument("reports", nargs="+", help="report.json files or the folders holding them")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_combine)


def cmd_combine(args: argparse.Namespace) -> int:
    """Combine reports and print the table."""
    from retain_ros.evaluate.sim_report import combine_reports, write_report

    cfg, records, wall_s = combine_reports(args.reports, args.out)
    paths = write_report(cfg, records, wall_s)
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['json']}, {paths['plot']}")
    return 0


def add_paired_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval paired`."""
    p = sub.add_parser("paired", help="paired test of two rows on the episodes both ran (exact McNemar)",
                       description="Compare two rows of `retain-eval sim` reports episode by episode (same task, "
                                   "column and seed): per column, each row's successes, the episodes B won and lost "
                                   "against A, and the exact McNemar p; the OOD families are also pooled. Example: "
                                   "retain-eval paired eval_sim#task-FT 'eval_sim#RETAIN co-FT a=0.95'")
    p.add_argument("a", help="row A: REPORT#ROW (REPORT: a report.json or its folder; #ROW may be left out when the "
                             "report holds one row)")
    p.add_argument("b", help="row B, the same way; B won / lost count its episodes against A's")
    p.set_defaults(func=cmd_paired)


def cmd_paired(args: argparse.Namespace) -> int:
    """Print the paired comparison of two rows."""
    from retain_ros.evaluate.paired import compare, markdown_table

    print(markdown_table(*compare(args.a, args.b)))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the simulated comparison and print the table."""
    from retain_ros.evaluate.sim_eval import (EvalConfig, default_variants, routed_variant, run_comparison,
                                              select_rows, skill2_variants, steered_variants)
    from retain_ros.evaluate.sim_report import write_report

    alphas = parse_alpha(args.alpha, "--alpha")
    variants = default_variants(alphas, args.language_alpha)
    if args.task_ft2 or args.task_ft2_single:
        skill_alphas = parse_alpha(args.skill_alphas, "--skill-alphas")
        if len(skill_alphas) != 2:
            raise ConfigError(f"--skill-alphas '{args.skill_alphas}' needs two values: the first skill's alpha and "
                              "the second's, e.g. 0.9,0.9")
        group_alpha = parse_one_group_alpha(args.skill2_group_alpha, "--skill2-group-alpha",
                                            "(the second skill's alpha of that group)")
        variants += skill2_variants((skill_alphas[0], skill_alphas[1]), single=bool(args.task_ft2_single),
                                    recipe=args.skill_recipe, chained=bool(args.task_ft2), group_alpha=group_alpha)
    if args.instruction_alphas:
        variants.append(routed_variant(args.instruction_alphas, args.routed_finetuned))
    if args.steering:
        variants += steered_variants(variants, args.steering)
        if args.steering == "value" and not args.steering_checkpoint:
            args.steering_checkpoint = str(embedded_models_dir() / "value")
    if args.rows:
        variants = select_rows(variants, args.rows)
    cfg = EvalConfig(base=args.base, task_ft=args.task_ft, co_ft=args.co_ft, target=args.target, out=args.out,
                     target2=args.target2, task_ft2=args.task_ft2, task_ft2_single=args.task_ft2_single,
                     episodes=args.episodes, generalist_episodes=args.generalist_episodes, seed=args.seed,
                     execute_steps=args.execute_steps, execution=args.execution, image_size=args.image_size,
                     variants=variants, ood=tuple(v for v in args.ood.split(",") if v),
                     generalist=tuple(t for t in args.generalist.split(",") if t) if args.generalist else None,
                     workers=args.workers, max_steps=args.max_steps,
                     steering_checkpoint=args.steering_checkpoint, steering_samples=args.steering_samples,
                     steering_noise=args.steering_noise, record=args.record)
    torch.set_num_threads(1)
    started = time.perf_counter()
    records = run_comparison(cfg, progress=not args.quiet, on_record=None if args.quiet else progress_lines(cfg))
    paths = write_report(cfg, records, time.perf_counter() - started)
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['json']}, {paths['plot']}")
    return 0


def progress_lines(cfg) -> Callable[[dict], None] | None:
    """Where no progress bar shows (output to a file or a pipe), a line per tenth of the episodes instead."""
    from retain_ros.evaluate.sim_eval import jobs_of

    if sys.stderr.isatty():
        return None
    total = sum(len(seeds) for _, _, seeds in jobs_of(cfg))
    every, started, seen = max(1, total // 10), time.perf_counter(), []

    def report(record: dict) -> None:
        seen.append(bool(record["success"]))
        if len(seen) % every == 0 or len(seen) == total:
            print(f"evaluate: {len(seen)}/{total} episodes, {sum(seen)} successful, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    return report


def add_bag_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval bag` (retain_ros/evaluate/bag_eval.py)."""
    from retain_ros.evaluate.bag_eval import add_bag_parser as add

    add(sub)


def add_trace_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval trace` (retain_ros/evaluate/sim_trace.py)."""
    from retain_ros.evaluate.sim_trace import add_trace_parser as add

    add(sub)


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval replay` (retain_ros/evaluate/live_replay.py; imports rclpy only when run)."""
    from retain_ros.evaluate.live_replay_cli import add_replay_parser as add

    add(sub)


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "sim": add_sim_parser, "combine": add_combine_parser, "paired": add_paired_parser,
    "bag": add_bag_parser, "replay": add_replay_parser,
    "trace": add_trace_parser}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `retain-eval` with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="retain-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="info logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `retain-eval`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="retain-eval: %(levelname)s: %(message)s")
    return run_reporting_errors("retain-eval", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
