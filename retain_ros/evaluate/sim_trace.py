"""Where a policy's episodes stall: a per-step trace of the fingertips, one object and the gripper, cut into phases.

`retain-eval trace` runs closed-loop episodes exactly as `retain-eval sim` does (every chunk through the node's
`ChunkExecutor`) and reports, per episode, when the fingertips came near the object, when the fingers first touched
it, when it was lifted, how close it came to its goal and whether it was let go, with the gripper positions the
policy asked for at each query. Success rates say how often a task fails; this says in which phase, which is what
decides the next lever (a grasp that never closes, a carry that ends short of the plate, a release that never comes).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.evaluate.metrics import GRIPPER_THRESHOLD
from retain_ros.evaluate.sim_rollout import rollout
from retain_ros.sim.env import EnvConfig, TabletopEnv

NEAR_M = 0.02  # fingertips this close to the object's centre count as having reached it
LIFT_M = 0.03  # the object this far above where it started counts as lifted
PHASES = ("reach", "grasp", "carry", "release", "released off goal", "contact", "push", "done")


@dataclass
class EpisodeTrace:
    """One episode, step by step (after each control period), and what the policy asked for at each query.

    Attributes:
        tcp: (T, 3) fingertip centre (m).
        obj: (T, 3) the traced object's centre (m).
        goal: (T, 2) the goal object's xy (m), or empty when the task has none.
        width: (T,) finger opening (m).
        touching: (T,) the fingers touch the object.
        queries: (step, gripper positions of the chunk's executed actions) per policy query.
    """

    task: str
    variation: str
    seed: int
    obj_name: str
    goal_name: str | None
    lifts: bool  # the task picks the object up (pick, place, stack) rather than pushing it
    tcp: list = field(default_factory=list)
    obj: list = field(default_factory=list)
    goal: list = field(default_factory=list)
    width: list = field(default_factory=list)
    touching: list = field(default_factory=list)
    queries: list = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def tick(self, env: TabletopEnv) -> None:
        """After each control period (`rollout`'s observer)."""
        p = env.physics
        self.tcp.append(p.tcp_position().copy())
        self.obj.append(p.object_position(self.obj_name).copy())
        if self.goal_name is not None:
            self.goal.append(p.object_position(self.goal_name)[:2].copy())
        self.width.append(p.gripper_width())
        self.touching.append(p.touching_gripper(self.obj_name))

    def query(self, env: TabletopEnv, actions: np.ndarray, gripper_index: int | None, executed: int) -> None:
        """Record the gripper positions of the actions that will run (at each policy query, from `rollout`)."""
        grip = [] if gripper_index is None else np.round(actions[:executed, gripper_index], 3).tolist()
        self.queries.append((env.num_steps, grip))

    def summary(self) -> dict:
        """The phase events (first step of each, None: never), the nearest approach to the goal, the final phase."""
        tcp, obj, width = np.asarray(self.tcp), np.asarray(self.obj), np.asarray(self.width)
        touching = np.asarray(self.touching, dtype=bool)
        dist = np.linalg.norm(tcp - obj, axis=1)
        reach, touch = _first(dist < NEAR_M), _first(touching)
        lift = _first(obj[:, 2] - obj[0, 2] > LIFT_M)
        asked = next((step for step, grip in self.queries if any(g > GRIPPER_THRESHOLD for g in grip)), None)
        out = {"task": self.task, "variation": self.variation, "seed": self.seed, "object": self.obj_name,
               "success": bool(self.record.get("success")), "steps": len(self.tcp), "nearest_cm": _cm(dist.min()),
               "reach": reach, "asked_close": asked, "touch": touch, "lift": lift, "goal_nearest_cm": None,
               "goal_nearest_step": None, "release": None}
        moved = lift if self.lifts else touch  # from when the object is under way
        if self.goal_name is not None and moved is not None:
            goal_dist = np.linalg.norm(obj[moved:, :2] - np.asarray(self.goal)[moved:], axis=1)
            k = int(goal_dist.argmin())
            out["goal_nearest_cm"], out["goal_nearest_step"] = _cm(goal_dist[k]), moved + k
        if self.goal_name is not None and self.lifts and lift is not None:
            let_go = ~touching[lift:] & (width[lift:] > width[lift] + 0.005)
            out["release"] = None if _first(let_go) is None else lift + _first(let_go)
        out["ended_in"] = _phase(out, self.lifts, self.goal_name is not None)
        return out


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _cm(metres: float) -> float:
    return round(float(metres) * 100.0, 1)


def _phase(s: dict, lifts: bool, has_goal: bool) -> str:
    """The phase an episode ended in: the first one whose event never came."""
    if s["success"]:
        return "done"
    if s["reach"] is None and s["touch"] is None:  # fingers on the cube count as reached (an off-centre grasp)
        return "reach"
    if not lifts:
        return "contact" if s["touch"] is None else "push"
    if s["lift"] is None:
        return "grasp"
    if not has_goal:
        return "carry"
    return "release" if s["release"] is None else "released off goal"


def traced_names(env: TabletopEnv, obj: str | None, goal: str | None) -> tuple[str, str | None, bool]:
    """The object to trace, its goal object and whether the task lifts it.

    The object is the task's cube (or its first cube), the goal its plate or base cube (None for a push).
    """
    from retain_ros.sim.task_suite import PushTask, PushToPlateTask

    task = env.task
    obj = obj or getattr(task, "cube", None) or (getattr(task, "cubes", None) or [None])[0]
    if obj is None:
        raise ConfigError(f"task {task.name} names no cube to trace; pass --object (e.g. cube_red)")
    goal = goal or getattr(task, "plate", None) or getattr(task, "base", None)
    return obj, goal, not isinstance(task, (PushTask, PushToPlateTask))


def trace_episodes(policy, task: str, variation: str, seeds, env_config: EnvConfig, execute_steps: int = 8,
                   obj: str | None = None, goal: str | None = None, on_episode=None) -> list[EpisodeTrace]:
    """Run one closed-loop episode per seed and trace it."""
    traces = []
    with TabletopEnv(task, variation, env_config) as env:
        obj_name, goal_name, lifts = traced_names(env, obj, goal)
        for seed in seeds:
            trace = EpisodeTrace(task, variation, int(seed), obj_name, goal_name, lifts)
            trace.record = rollout(policy, env, int(seed), execute_steps, observer=trace)
            traces.append(trace)
            if on_episode is not None:
                on_episode(trace)
    return traces


def summary_line(s: dict) -> str:
    """One line per episode for the terminal."""
    def at(key):
        return "-" if s[key] is None else str(s[key])
    goal = "" if s["goal_nearest_cm"] is None else f" goal {s['goal_nearest_cm']:.1f} cm @{s['goal_nearest_step']}"
    return (f"seed {s['seed']}: {'success' if s['success'] else 'failed '} after {s['steps']} steps, ended in "
            f"{s['ended_in']:<12} | nearest {s['nearest_cm']:.1f} cm, reach @{at('reach')}, asked close "
            f"@{at('asked_close')}, touch @{at('touch')}, lift @{at('lift')}{goal}, release @{at('release')}")


def add_trace_parser(sub: argparse._SubParsersAction) -> None:
    """Add `retain-eval trace`."""
    from retain_ros.paths import embedded_models_dir

    p = sub.add_parser("trace", help="where a policy's episodes stall: reach, grasp, carry, release, per episode",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--checkpoint", default=str(embedded_models_dir() / "base"),
                   help="policy checkpoint (default: the embedded base; a merge: `retain-merge` it first)")
    p.add_argument("--task", required=True, help="task name, e.g. place_red_on_yellow (`retain-sim tasks`)")
    p.add_argument("--variation", default="id", help="variation family (id, position, appearance, ...)")
    p.add_argument("--episodes", type=int, default=5, help="episodes (one per seed)")
    p.add_argument("--seed", type=int, default=7000, help="first seed")
    p.add_argument("--object", help="object to trace (default: the task's cube)")
    p.add_argument("--goal", help="goal object (default: the task's plate or base cube)")
    p.add_argument("--execute-steps", type=int, default=8, help="actions executed per chunk, as in `sim`")
    p.add_argument("--image-size", type=int, default=64, help="rendered camera image side (the embedded models: 64)")
    p.add_argument("--out", help="directory for trace.json (summaries and per-query gripper positions) and "
                                 "traces.npz (per-step arrays)")
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    """`retain-eval trace`."""
    import torch

    from retain_ros.policy.reference_policy import ReferencePolicy
    from retain_ros.sim.tasks import SUITE

    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes} must be >= 1")
    SUITE.get(args.task)  # an unknown task is refused with the list of names
    torch.set_num_threads(1)
    policy = ReferencePolicy.from_pretrained(args.checkpoint)
    seeds = range(args.seed, args.seed + args.episodes)
    traces = trace_episodes(policy, args.task, args.variation, seeds, EnvConfig(image_size=args.image_size),
                            args.execute_steps, args.object, args.goal,
                            on_episode=lambda t: print(summary_line(t.summary()), flush=True))
    summaries = [t.summary() for t in traces]
    ended = {phase: sum(s["ended_in"] == phase for s in summaries) for phase in PHASES}
    print(f"{args.task} / {args.variation}: " + ", ".join(f"{k} {v}" for k, v in ended.items() if v))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trace.json").write_text(json.dumps(
            {"checkpoint": args.checkpoint, "ended_in": ended, "episodes": summaries,
             "queries": {str(t.seed): t.queries for t in traces}}, indent=1))
        arrays = {f"{name}_{t.seed}": np.asarray(getattr(t, name))
                  for t in traces for name in ("tcp", "obj", "width", "touching")}
        np.savez_compressed(out / "traces.npz", **arrays)
        print(f"wrote {out / 'trace.json'} and {out / 'traces.npz'}")
    return 0
