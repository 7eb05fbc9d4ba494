"""`retain-train`: pretrain the reference VLA, finetune it on a target task, co-finetune it, or learn a value function.

Exit codes: 0 ok, 2 a user error (message on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from retain_ros.cli_errors import run_reporting_errors
from retain_ros.errors import ConfigError
from retain_ros.merge.cli import parse_alpha
from retain_ros.train.fit import alpha_path_loss, fit_error, plot_alpha_path
from retain_ros.train.loop import COFINETUNE, FINETUNE, PRETRAIN, TrainConfig, TrainResult, train

ERROR, PATH, VALUE = "error", "path", "value"
EPILOG = """\
examples:
  retain-sim collect --tasks generalist --episodes 5 --image-size 64 --out data/pre
  retain-sim collect --tasks push_red_to_purple --episodes 50 --image-size 64 --out data/target
  retain-train pretrain --data data/pre --steps 3000 --out ckpt/base
  retain-train finetune --init ckpt/base --data data/target --steps 1000 --out ckpt/task_ft
  retain-train cofinetune --init ckpt/base --data data/target --pretrain-data data/pre --out ckpt/co_ft
  retain-train error --init ckpt/task_ft --data data/target_heldout
  retain-train path --base ckpt/base --finetuned ckpt/task_ft --data data/target
  retain-eval sim --rows 'random$' --steering random --steering-noise 0.5 --record data/rollouts --out ev
  retain-train value --data data/rollouts --out ckpt/value
"""

# Finetuning runs at half the pretraining rate, so the finetuned weights stay in the base's basin and merges between
# the two stay meaningful (docs/policy.md measures the loss along the alpha path).
DEFAULT_LR = {PRETRAIN: 1e-3, FINETUNE: 5e-4, COFINETUNE: 5e-4}


def _model_overrides(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model expects a JSON object of reference-VLA settings, e.g. '{{\"width\": 64}}' "
                          f"({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError("--model expects a JSON object, e.g. '{\"width\": 64, \"layers\": 2}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `retain-train`."""
    parser = argparse.ArgumentParser(prog="retain-train", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="info logging")
    sub = parser.add_subparsers(dest="mode", required=True)
    helps = {PRETRAIN: "train a fresh generalist on the pretraining suite",
             FINETUNE: "task-FT: finetune a checkpoint on target-task demos",
             COFINETUNE: "co-FT: finetune on a mix of target demos and pretraining data"}
    for mode in (PRETRAIN, FINETUNE, COFINETUNE):
        p = sub.add_parser(mode, help=helps[mode])
        p.add_argument("--data", nargs="+", required=True,
                       help="dataset directories from retain-sim collect" +
                            (" (generalist suite)" if mode == PRETRAIN else " (target-task demos)"))
        if mode != PRETRAIN:
            p.add_argument("--init", required=True, help="checkpoint to start from (the pretrained base)")
        else:
            p.add_argument("--model", help="JSON object of reference-VLA settings (default: the embedded size)")
        if mode != PRETRAIN:
            p.add_argument("--freeze", default="", help="parameter groups kept as --init has them, comma-separated "
                           "(vision, language, action), e.g. 'action': the finetune moves only vision and language")
        if mode == COFINETUNE:
            p.add_argument("--pretrain-data", nargs="+", required=True, help="pretraining dataset directories")
            p.add_argument("--target-fraction", type=float, default=0.2, help="share of target samples per batch")
        p.add_argument("--out", required=True, help="output checkpoint directory")
        p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
        p.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
        p.add_argument("--lr", type=float, default=DEFAULT_LR[mode], help=f"peak learning rate ({DEFAULT_LR[mode]})")
        p.add_argument("--seed", type=int, default=0, help="seed of weights, batches, augmentation and noise")
        p.add_argument("--augment", action="store_true",
                       help="random image shifts and brightness/contrast changes (off by default: they slowed fitting "
                            "at this model size; robustness comes from the OOD families in the pretraining data)")
        p.add_argument("--max-episodes", type=int, help="use at most this many episodes per dataset directory")
        p.add_argument("--overwrite", action="store_true", help="write into an existing checkpoint directory")
        p.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: small models train faster single-threaded on a busy CPU)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser(ERROR, help="offline imitation error of a checkpoint on demos (rad/s, per episode third)")
    p.add_argument("--init", required=True, help="checkpoint to score")
    p.add_argument("--data", nargs="+", required=True, help="dataset directories from retain-sim collect")
    p.add_argument("--skip-episodes", type=int, default=0,
                   help="skip this many successful episodes per directory (score held-out ones only)")
    p.add_argument("--max-episodes", type=int, help="score at most this many episodes per directory")
    p.add_argument("--stride", type=int, default=2, help="score every N-th step (default 2)")
    p.add_argument("--noise-scale", type=float, help="sampler noise scale to score with (default: the checkpoint's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p = sub.add_parser(PATH, help="loss of RETAIN merges along alpha from the base to a finetuned checkpoint")
    p.add_argument("--base", required=True, help="pretrained checkpoint (alpha 0)")
    p.add_argument("--finetuned", nargs="+", required=True,
                   help="checkpoint(s) finetuned from --base (alpha 1); one path each")
    p.add_argument("--data", nargs="+", required=True, help="dataset directories; each one scores its own path")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,0.9,1", help="comma-separated alphas (default 0,...,1)")
    p.add_argument("--samples", type=int, default=256, help="fixed batch size (default 256)")
    p.add_argument("--hold", default="", help="groups kept at their own alpha while the others move, e.g. "
                   "'vision:0,language:0' (only the action expert merges): a modality-specific path")
    p.add_argument("--plot", help="also draw every path (loss vs alpha) into this PNG file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    add_value_parser(sub)
    return parser


def add_value_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-train value` (retain_ros/steering/training.py)."""
    from retain_ros.steering.training import ValueTrainConfig as V

    p = sub.add_parser(VALUE, help="V-GPS: a language-conditioned Q(observation, chunk) from recorded rollouts, for "
                                   "steering the node and retain-eval sim --steering value",
                       description="Learn Q(cameras, state, instruction, executed chunk) offline from rollouts "
                                   "recorded by `retain-eval sim --record DIR --steering random` (sparse success "
                                   "reward, mismatched instructions as negatives): Monte-Carlo returns by default, "
                                   "V-GPS's Cal-QL with --target max --cql-alpha 5; writes a value checkpoint with its "
                                   "held-out calibration in training.json.")
    p.add_argument("--data", nargs="+", required=True, help="rollout directories (retain-eval sim --record)")
    p.add_argument("--out", required=True, help="output value checkpoint directory")
    p.add_argument("--steps", type=int, default=V.steps, help=f"optimiser steps (default {V.steps})")
    p.add_argument("--batch-size", type=int, default=V.batch_size, help=f"decisions per step ({V.batch_size})")
    p.add_argument("--lr", type=float, default=V.lr, help=f"peak learning rate (default {V.lr}, as V-GPS)")
    p.add_argument("--discount", type=float, default=V.discount, help=f"per decision (default {V.discount})")
    p.add_argument("--cql-alpha", type=float, default=V.cql_alpha,
                   help=f"weight of the Cal-QL penalty (default {V.cql_alpha}; V-GPS: 5)")
    p.add_argument("--target", choices=("max", "executed", "mc"), default=V.target,
                   help="what Q regresses to: mc (the Monte-Carlo return; default), max (r + discount max_k Q'(s', "
                        "a'_k) over the next decision's samples, V-GPS), executed (SARSA: the chunk that ran next)")
    p.add_argument("--negatives", type=float, default=V.negatives,
                   help=f"share of rows paired with a mismatched instruction, target 0 (default {V.negatives})")
    p.add_argument("--held-out", type=float, default=V.held_out,
                   help=f"share of episodes kept out of training for the calibration report ({V.held_out})")
    p.add_argument("--executed-steps", type=int, default=V.executed_steps,
                   help=f"actions of a chunk that Q scores: the node's execute_steps (default {V.executed_steps})")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    p.add_argument("--model", help="JSON object of value-network sizes (ValueConfig), e.g. '{\"hidden\": [128, 128]}'")
    p.add_argument("--overwrite", action="store_true", help="write into an existing checkpoint directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run_value(args: argparse.Namespace) -> int:
    """`retain-train value`: train, then print the losses and the held-out calibration."""
    from retain_ros.steering.training import ValueTrainConfig, train_value

    cfg = ValueTrainConfig(data=tuple(args.data), out=args.out, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, discount=args.discount, cql_alpha=args.cql_alpha, negatives=args.negatives,
                           held_out=args.held_out, executed_steps=args.executed_steps, target=args.target,
                           seed=args.seed,
                           model=_model_overrides(args.model), overwrite=args.overwrite)

    def report(step: int, loss: float, parts: dict) -> None:
        if step % 250 == 0 or step == cfg.steps:
            detail = "  ".join(f"{k} {v:.4f}" for k, v in parts.items())
            print(f"step {step:6d}/{cfg.steps}  loss {loss:.4f}  ({detail})", flush=True)

    result = train_value(cfg, progress=not args.quiet, on_log=report)
    cal = result.calibration
    print(f"trained on {result.rows} decisions of {result.episodes} episodes in {result.wall_s:.0f} s; loss "
          f"{result.first_loss:.4f} -> {result.final_loss:.4f}")
    if cal.get("rows"):
        print(f"held out: {cal['episodes']} episodes ({cal['successful_episodes']} successful), {cal['rows']} "
              f"decisions: Q vs return MSE {cal['mse_vs_return']:.4f}, Pearson {cal['pearson_vs_return']:.3f}; "
              f"success AUC {cal['auc_success']:.3f} (mean Q {cal['mean_q_success']:.3f} successful vs "
              f"{cal['mean_q_failure']:.3f} failed); spread over samples {cal['mean_spread_over_samples']:.4f}")
    print(f"checkpoint: {result.out}")
    return 0


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the command line describes (validated)."""
    return TrainConfig(mode=args.mode, data=tuple(args.data), out=args.out, init=getattr(args, "init", None),
                       pretrain_data=tuple(getattr(args, "pretrain_data", None) or ()),
                       target_fraction=getattr(args, "target_fraction", 0.2), steps=args.steps,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, augment=args.augment,
                       max_episodes=args.max_episodes, model=_model_overrides(getattr(args, "model", None)),
                       overwrite=args.overwrite,
                       freeze=tuple(g.strip() for g in getattr(args, "freeze", "").split(",") if g.strip()))


def summary(result: TrainResult) -> str:
    """The one-screen summary printed at the end of a run."""
    return (f"trained {result.parameters / 1e6:.2f} M parameters for {result.steps} steps on {result.samples} samples "
            f"in {result.wall_s:.0f} s\nloss: {result.first_loss:.4f} (first interval) -> {result.final_loss:.4f} "
            f"(last)\ncheckpoint: {result.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `retain-train`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="retain-train: %(levelname)s: %(message)s")
    return run_reporting_errors("retain-train", lambda: run(args), "interrupted; no checkpoint was written")


def run_path(args: argparse.Namespace) -> int:
    """`retain-train path`: the loss along alpha for every (finetuned, data) pair, a barrier verdict, a plot."""
    alphas = parse_alpha(args.alphas, "--alphas")
    hold = parse_hold(args.hold)
    held = f" ({', '.join(f'{g} held at {a:g}' for g, a in hold.items())})" if hold else ""
    curves = {}
    for finetuned in args.finetuned:
        for data in args.data:
            label = f"{Path(finetuned).name} on {Path(data).name}"
            path = curves[label] = alpha_path_loss(args.base, finetuned, [data], alphas, args.samples, hold=hold)
            print(f"path {args.base} -> {finetuned} on {data}{held}")
            for alpha, loss in path:
                print(f"  alpha {alpha:.2f}  loss {loss:.4f}")
            if alphas[0] == 0 and alphas[-1] == 1:
                ends, peak = max(path[0][1], path[-1][1]), max(loss for _, loss in path)
                print("  no barrier: no merge is worse than both ends" if peak <= ends + 1e-9 else
                      f"  barrier: a merge's loss {peak:.4f} exceeds both ends (max {ends:.4f})")
    if args.plot:
        print(f"plot: {plot_alpha_path(curves, args.plot)}")
    return 0


def parse_hold(text: str) -> dict[str, float]:
    """'vision:0,language:0.5' -> {group: alpha} for `--hold`.

    Raises:
        ConfigError: an item that is not GROUP:ALPHA with an alpha in [0, 1] (the merge refuses unknown groups).
    """
    hold = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        group, _, value = item.partition(":")
        try:
            alpha = float(value)
        except ValueError:
            alpha = float("nan")
        if not group or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--hold item '{item}' must be GROUP:ALPHA with ALPHA in [0, 1], e.g. "
                              "vision:0,language:0")
        hold[group] = alpha
    return hold


def run(args: argparse.Namespace) -> int:
    """Train as the arguments say and print the summary."""
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    torch.set_num_threads(args.threads)
    if args.mode == ERROR:
        print(fit_error(args.init, args.data, args.max_episodes, args.skip_episodes, args.stride,
                        args.noise_scale).line())
        return 0
    if args.mode == PATH:
        return run_path(args)
    if args.mode == VALUE:
        return run_value(args)
    cfg = config_from_args(args)

    def report(step: int, loss: float) -> None:
        if args.quiet or step % 250 == 0 or step == cfg.steps:
            print(f"step {step:6d}/{cfg.steps}  loss {loss:.4f}", flush=True)

    result = train(cfg, progress=not args.quiet, on_log=report)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
