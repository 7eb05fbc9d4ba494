"""Offline replay evaluation (`retain-eval bag`): score a RETAIN merge at several alphas on recorded rosbags.

For every episode of every bag: rebuild the observations the live node would have assembled (`control/inputs.py`,
the node's own conversion and assembly code), run the policy on each at every alpha, and compare the predicted chunk
with what the robot executed (`targets.py`, `metrics.py`). One `ResidentMerger` holds base and finetuned weights for
the whole sweep and one policy serves, its weights swapped with `Policy.load_merged` (as the node re-merges live).
Episodes are read once and their observations kept in memory while every alpha runs on them.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from retain_ros.errors import ConfigError
from retain_ros.merge.cli import parse_alpha, parse_one_group_alpha
from retain_ros.serving.recipes import check_rules, parse_rules
from retain_ros.evaluate.bag_reader import Bag, BagError, Episode, check_bag_path
from retain_ros.evaluate.metrics import ErrorStack, aggregate
from retain_ros.evaluate.report import summary_text, write_report
from retain_ros.control.inputs import InputSettings, NodeInputs
from retain_ros.evaluate.targets import ACTION, COMMAND, JOINT_STATES, TARGETS, TargetBuilder, Targets
from retain_ros.merge.resident import ResidentMerger
from retain_ros.policy.interface import Observation, Policy, load_policy
from retain_ros.steering.value_function import ValueFunction
from retain_ros.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class BagEvalConfig:
    """One offline evaluation run.

    Attributes:
        bags: bag directories or .db3/.mcap files.
        base: pretrained checkpoint.
        finetuned: finetuned checkpoints (several = sequential skills).
        alphas: merge weights to evaluate.
        group_alpha: per-group alphas that override `alpha` for their group (e.g. {'vision': 1.0}).
        instruction_alphas: `instruction_alphas` items (PATTERN=SPEC): adds a 'routed' entry scoring each episode at
            the recipe of its instruction, as the node serves it (no match: the base).
        out: output directory.
        params: the node's parameter file (None = config/fr3_droid.yaml).
        instruction: instruction that wins over the bag's instruction topic ('' = the params file's, else the topic).
        target: 'auto', 'action', 'command' or 'joint_states' (see targets.py).
        action_topic: DROID action topic (std_msgs/Float64MultiArray).
        episode_topic: '' = one episode per bag; else a topic whose messages start episodes.
        every: evaluate at every n-th frame of the first camera.
        groups: group preset ('' = the params file's group_preset).
        device: torch device.
        resamples: bootstrap resamples.
        trace_episodes: episodes drawn in the trace plot.
        progress: show a progress bar.
        value: a value function (retain-train value): each alpha's mean Q of its own chunks on the bag's states,
            an offline ranking of the alphas beside the replay error.
    """

    bags: Sequence[str | Path]
    base: str | Path
    finetuned: Sequence[str | Path]
    alphas: Sequence[float]
    out: str | Path
    group_alpha: dict[str, float] = field(default_factory=dict)
    instruction_alphas: Sequence[str] = ()
    params: str | Path | None = None
    instruction: str = ""
    target: str = "auto"
    action_topic: str = Topics().droid_action
    episode_topic: str = ""
    every: int = 1
    groups: str = ""
    device: str = "cpu"
    resamples: int = 1000
    trace_episodes: int = 3
    progress: bool = True
    value: str | Path | None = None

    def __post_init__(self) -> None:
        if not self.bags:
            raise ConfigError("no bags given; pass one or more bag directories or .db3/.mcap files")
        if not self.alphas:
            raise ConfigError("no alphas given; pass e.g. --alpha 0.25,0.5,0.75")
        if self.every < 1:
            raise ConfigError(f"--every {self.every} must be >= 1")
        if self.target != "auto" and self.target not in TARGETS:
            raise ConfigError(f"--target '{self.target}' is unknown; use one of auto, {', '.join(TARGETS)}")


@dataclass
class EpisodeData:
    """One episode's observations (kept for the whole alpha sweep) and executed actions."""

    episode: Episode
    observations: list[Observation]
    targets: Targets
    skipped: int


@dataclass
class Timing:
    """Where the time went (s)."""

    total: float = 0.0
    read: float = 0.0
    forward: float = 0.0
    merge: float = 0.0
    bag_seconds: float = 0.0
    predictions: int = 0


ROUTED = "routed"  # the label of the per-instruction entry


def alpha_label(alpha: float, group_alpha: dict[str, float]) -> str:
    """'0.50' or '0.50 (vision=1.00)'."""
    groups = ", ".join(f"{g}={a:.2f}" for g, a in sorted(group_alpha.items()))
    return f"{alpha:.2f}" + (f" ({groups})" if groups else "")


def resolve_target(bag: Bag, cfg: BagEvalConfig, settings: InputSettings) -> str:
    """The target kind for `bag` ('auto' -> the first recorded of action, command).

    Raises:
        BagError: no executed actions in the bag, or the requested kind's topic is absent.
    """
    topics = {ACTION: cfg.action_topic, COMMAND: settings.command_topic, JOINT_STATES: settings.joint_states_topic}
    have = {t for t, (_, n) in bag.topics.items() if n}
    if cfg.target == "auto":
        for kind in (ACTION, COMMAND):
            if topics[kind] in have:
                return kind
        raise BagError(f"bag {bag.path} has no executed actions: no messages on {cfg.action_topic} (DROID actions) "
                       f"or {settings.command_topic} (trajectory commands). The bag has: {bag.describe_topics()}. "
                       "Fix: --target joint_states compares with the joint states that followed, or --action-topic "
                       "names the topic that holds the actions")
    bag.require({topics[cfg.target]: f"executed actions for --target {cfg.target}"},
                "Fix: choose another --target (auto, action, command, joint_states)")
    return cfg.target


def check_inputs(bag: Bag, assembler: NodeInputs, settings: InputSettings) -> None:
    """Fail early: input topics present, an instruction available, the joint names found in the joint states.

    Raises:
        BagError: naming the missing topic / joints and the fix.
    """
    s = settings
    needed = {s.camera_topic[c]: f"camera '{c}'" for c in assembler.cameras}
    needed[s.joint_states_topic] = "joint states"
    if s.gripper_states_topic:
        needed[s.gripper_states_topic] = "gripper finger states"
    bag.require(needed, f"Fix: pass --params with the topic names of this robot (read from {s.source})")
    if not s.instruction and bag.topics.get(s.instruction_topic, ("", 0))[1] == 0:
        raise BagError(f"bag {bag.path} has no messages on the instruction topic {s.instruction_topic!r} and no "
                       "instruction is set. Fix: pass --instruction 'TEXT' (or set `instruction` in the params file)")
    for topic, names, what in ((s.joint_states_topic, s.joint_names, "joint_names"),
                               (s.gripper_states_topic, s.gripper_joint_names, "gripper_joint_names")):
        if not topic:
            continue
        first = next(bag.messages([topic]), None)
        have = list(first.msg.name) if first is not None else []
        missing = [n for n in names if n not in have]
        if missing:
            raise BagError(f"{topic} in bag {bag.path} lacks joint(s) {missing}: it has {have}, {what} "
                           f"({s.source}) asks for {list(names)}. Fix: set {what} in the params file to this robot's "
                           "joint names")


def read_episode(bag: Bag, episode: Episode, assembler: NodeInputs, builder: TargetBuilder,
                 action_topic: str, every: int) -> EpisodeData:
    """One pass over the episode: observations at every `every`-th frame of the first camera, and executed actions.

    An observation at a frame's log time sees every message logged up to that time (as the node would by then).
    """
    s = assembler.settings
    clock_topic = s.camera_topic[assembler.cameras[0]]
    handlers = {ACTION: {action_topic: builder.add_action},
                COMMAND: {s.command_topic: builder.add_trajectory, s.gripper_command_topic: builder.add_gripper_width},
                JOINT_STATES: {s.joint_states_topic: builder.add_joint_state,
                               s.gripper_states_topic: builder.add_finger_state}}[builder.kind]
    assembler.reset()
    observations: list[Observation] = []
    pending: list[int] = []  # frame times whose observation waits for the messages logged at the same time
    frames = skipped = 0
    for m in bag.messages([*assembler.topics, *handlers], episode.start_ns, episode.end_ns):
        while pending and pending[0] < m.log_ns:
            obs = assembler.observation(pending.pop(0))
            skipped += obs is None
            observations += [obs] if obs is not None else []
        if m.topic in handlers:
            handlers[m.topic](m.log_ns, m.msg)
        assembler.feed(m.topic, m.log_ns, m.msg)
        if m.topic == clock_topic:
            pending += [m.log_ns] if frames % every == 0 else []
            frames += 1
    for stamp in pending:
        obs = assembler.observation(stamp)
        skipped += obs is None
        observations += [obs] if obs is not None else []
    if builder.empty:
        raise BagError(f"episode {episode.name} has no executed actions on {', '.join(t for t in handlers if t)}; "
                       "Fix: choose another --target (auto, action, command, joint_states)")
    return EpisodeData(episode, observations, builder.build(), skipped)


class BagEvaluation:
    """Loads the policy and the resident merger once, then evaluates episodes at every alpha."""

    def __init__(self, cfg: BagEvalConfig) -> None:
        self.cfg = cfg
        for bag in cfg.bags:
            check_bag_path(bag)
        self.settings = InputSettings.from_file(cfg.params, instruction=cfg.instruction or None)
        preset = cfg.groups or self.settings.group_preset
        self.policy: Policy = load_policy(cfg.base, device=cfg.device, seed=self.settings.seed)
        self.merger = ResidentMerger.from_checkpoints(str(cfg.base), [str(f) for f in cfg.finetuned], groups=preset,
                                                      device=cfg.device)
        self.specs = [{"default": float(a), **cfg.group_alpha} for a in cfg.alphas]
        for spec in self.specs:
            self.merger.resolve(spec)  # bad alphas / unknown groups fail before any bag is read
        self.labels = [alpha_label(a, cfg.group_alpha) for a in cfg.alphas]
        self.rules = parse_rules(cfg.instruction_alphas)
        check_rules(self.rules, self.merger.groups, len(cfg.finetuned))
        if self.rules:
            self.labels.append(ROUTED)
            self.specs.append(None)  # per episode: `routed_spec`
        self._buffers = self.merger.allocate()
        self.assembler = NodeInputs(self.settings, tuple(self.policy.spec.camera_names))
        self.timing = Timing()
        self.target_kind = ""
        self.value = ValueFunction.from_pretrained(cfg.value) if cfg.value else None
        if self.value is not None:
            self.value.check_fits(self.policy.spec)
        self.q: dict[str, list[float]] = {label: [] for label in self.labels}  # each alpha's Q of its own chunks

    def run(self) -> dict:
        """Evaluate every bag; returns {'episodes': [...], 'stacks': {label: {episode: ErrorStack}}, ...}."""
        started = time.perf_counter()
        stacks: dict[str, dict[str, ErrorStack]] = {label: {} for label in self.labels}
        self.q = {label: [] for label in self.labels}
        episodes: list[dict] = []
        # disable=None: no bar when stderr is not a terminal (logs, CI), instead of one line per update
        bar = tqdm(total=self._frames_estimate(), unit="pred", desc="retain-eval bag",
                   disable=None if self.cfg.progress else True)
        for path in self.cfg.bags:
            with Bag(path) as bag:
                kind = resolve_target(bag, self.cfg, self.settings)
                if self.target_kind and kind != self.target_kind:
                    raise BagError(f"bag {bag.path} gives --target {kind} but earlier bags gave {self.target_kind}; "
                                   f"pass --target {self.target_kind} (or evaluate them separately)")
                self.target_kind = kind
                check_inputs(bag, self.assembler, self.settings)
                self.timing.bag_seconds += (bag.end_ns - bag.start_ns) * 1e-9
                for episode in bag.episodes(self.cfg.episode_topic):
                    t0 = time.perf_counter()
                    data = read_episode(bag, episode, self.assembler, self._builder(kind), self.cfg.action_topic,
                                        self.cfg.every)
                    self.timing.read += time.perf_counter() - t0
                    episodes.append({"name": episode.name, "bag": str(bag.path), "observations": len(data.observations),
                                     "skipped_stale": data.skipped})
                    if not data.observations:
                        log.warning("episode %s: no observation could be assembled (streams never all fresh)",
                                    episode.name)
                    for label, spec in zip(self.labels, self.specs):
                        stacks[label][episode.name] = self._evaluate(data, spec, bar, self.q[label])
        bar.close()
        self.timing.total = time.perf_counter() - started
        if not any(e["observations"] for e in episodes):
            raise BagError("no observation could be assembled from any bag: the input streams were never all fresh "
                           "at once (see the stream ages in the params file)")
        return {"episodes": episodes, "stacks": stacks, "target": self.target_kind,
                "aggregate": {label: aggregate(list(per.values()), self.cfg.resamples) for label, per in
                              stacks.items()},
                "per_episode": {label: {name: s.summary() for name, s in per.items()} for label, per in
                                stacks.items()},
                "value": {label: {"mean_q": float(np.mean(q)), "observations": len(q)} for label, q in self.q.items()
                          if q} if self.value is not None else None}

    def _builder(self, kind: str) -> TargetBuilder:
        s = self.settings
        return TargetBuilder(kind, s.joint_names, s.gripper_joint_names, s.gripper_max_width_m,
                             self.policy.spec.dt_s)

    def _frames_estimate(self) -> int:
        total = 0
        for path in self.cfg.bags:
            with Bag(path) as bag:
                topic = self.settings.camera_topic.get(self.assembler.cameras[0], "")
                total += -(-bag.topics.get(topic, ("", 0))[1] // self.cfg.every)
        return total * len(self.specs)

    def routed_spec(self, instruction: str) -> dict:
        """The alphas the node's `instruction_alphas` give `instruction` (no match: the base, alpha 0)."""
        rule = next((r for r in self.rules if r.matches(instruction)), None)
        if rule is None:
            return {"default": 0.0}
        return {"default": rule.alpha if rule.alpha is not None else 0.0, **rule.group_alpha}

    def _evaluate(self, data: EpisodeData, spec: dict | None, bar: tqdm, q: list[float]) -> ErrorStack:
        if spec is None:
            spec = self.routed_spec(data.observations[0].instruction if data.observations else "")
        t0 = time.perf_counter()
        merged = self.merger.merge(spec, out=self._buffers)
        self.policy.load_merged(merged.tensors)
        self.timing.merge += time.perf_counter() - t0
        horizon = self.policy.spec.horizon
        preds, targets = [], []
        for obs in data.observations:
            t1 = time.perf_counter()
            chunk = self.policy.predict(obs)
            self.timing.forward += time.perf_counter() - t1
            if self.value is not None:
                q.append(float(self.value.score(obs, chunk.actions[None])[0]))
            preds.append(data.targets.prediction(chunk, obs.joint_positions))
            targets.append(data.targets.target(obs.stamp_ns, horizon))
            bar.update(1)
        self.timing.predictions += len(data.observations)
        return ErrorStack.stack(preds, targets, [o.stamp_ns for o in data.observations], horizon,
                                len(self.settings.joint_names) + 1)


def evaluate_bags(cfg: BagEvalConfig) -> tuple[dict, dict[str, Path]]:
    """Run the evaluation and write the report (report.json, report.md, predictions.npz, PNG plots).

    Returns:
        (results, paths of the written files).

    Raises:
        ConfigError: any user-fixable problem (bags, topics, joints, checkpoints, alphas), with its fix.
    """
    evaluation = BagEvaluation(cfg)
    results = evaluation.run()
    paths = write_report(cfg, evaluation, results)
    return results, paths


# ----------------------------------------------------------------------------------------------------- CLI
def add_bag_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval bag`."""
    p = sub.add_parser("bag", help="offline replay of rosbags through RETAIN merges at several alphas",
                       description="Rebuild the node's observations from recorded bags, run the merged policy at "
                                   "every alpha and compare its chunks with the executed actions; writes report.json, "
                                   "report.md, predictions.npz and PNG plots into --out.")
    p.add_argument("bags", nargs="+", help="bag directories (with metadata.yaml) or .db3/.mcap files")
    p.add_argument("--base", required=True, help="pretrained checkpoint directory")
    p.add_argument("--finetuned", nargs="+", required=True, help="finetuned checkpoint(s); several = sequential")
    p.add_argument("--alpha", default="0.25,0.5,0.75", help="alphas, comma-separated (default 0.25,0.5,0.75)")
    p.add_argument("--group-alpha", action="append", default=[], metavar="GROUP=A",
                   help="per-group alpha overriding --alpha for that group (repeatable)")
    p.add_argument("--instruction-alphas", nargs="+", default=[], metavar="PATTERN=SPEC",
                   help="add a 'routed' entry: each episode at the recipe of its instruction, as the node's "
                        "instruction_alphas parameter serves it (first match wins; no match: the base)")
    p.add_argument("--groups", default="", help="group preset (default: the params file's group_preset)")
    p.add_argument("--params", help="the node's parameter file (default: config/fr3_droid.yaml)")
    p.add_argument("--instruction", default="", help="instruction (wins over the bag's instruction topic)")
    p.add_argument("--target", default="auto", choices=("auto", *TARGETS),
                   help="executed actions to compare with: DROID actions, trajectory commands or the joint states "
                        "that followed (default: auto = action, else command)")
    p.add_argument("--action-topic", default=Topics().droid_action, help="DROID action topic (Float64MultiArray)")
    p.add_argument("--episode-topic", default="", help="topic whose messages start new episodes (default: one "
                                                       "episode per bag)")
    p.add_argument("--every", type=int, default=1, help="evaluate at every n-th camera frame")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                   help="torch CPU threads (default: half the cores, at most 4)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--value", metavar="DIR", help="value function (retain-train value): also report each alpha's "
                                                  "mean Q of its own chunks on the bag's states")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bag)


def cmd_bag(args: argparse.Namespace) -> int:
    """Run `retain-eval bag` and print the one-screen summary."""
    cfg = BagEvalConfig(bags=args.bags, base=args.base, finetuned=args.finetuned,
                        alphas=parse_alpha(args.alpha, "--alpha"),
                        group_alpha=parse_one_group_alpha(args.group_alpha, "--group-alpha", "for a bag sweep"),
                        out=args.out, params=args.params,
                        instruction_alphas=args.instruction_alphas,
                        instruction=args.instruction, target=args.target, action_topic=args.action_topic,
                        episode_topic=args.episode_topic, every=args.every, groups=args.groups, device=args.device,
                        resamples=args.resamples, progress=not args.quiet, value=args.value)
    torch.set_num_threads(max(1, args.threads))
    results, paths = evaluate_bags(cfg)
    print(summary_text(results, paths))
    return 0
