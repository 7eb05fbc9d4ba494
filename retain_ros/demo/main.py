"""`make demo`: the whole product end to end on a laptop with pip alone (issue 7).

1. starts the simulated robot (MuJoCo) and the policy node (embedded base + task-finetuned checkpoints, alpha 0.5) as
   separate processes in an isolated ROS environment (own domain id, Fast DDS profile, logs under the output folder);
2. runs episodes of the target task in `id`, in an OOD variation and of a generalist task, driven through the sim
   node's parameters and its `~/reset` / `~/success` services, while the live recorder writes every topic to a bag;
3. changes alpha live through the parameter service (as `ros2 param set` does), waits until `~/status` reports the
   new weights' identity, and runs the same episodes again; then sets `instruction_alphas` (the target's instruction
   at 0.9, every other at the base) and runs the target task, a generalist task and the target again back to back
   with the same node, each at its own recipe, printing how each recipe came to serve (merged or from the cache);
   then the generalist task once more with value-guided steering on (`steering value`, the embedded value function);
4. records held-out expert demonstrations of the OOD setting as bags (`retain-sim collect --bag`, seeds no model
   trained on) and scores every alpha on them with `retain-eval bag` (the expert's DROID actions as targets), so the
   offline ranking of alphas stands next to the closed-loop successes of steps 2-3;
5. prints one summary table and writes the plots, a PNG strip of an episode and summary.json into the output folder.
Every process it started is stopped at the end, also on Ctrl-C; the exit code is non-zero if any step failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

from retain_ros.errors import ConfigError
from retain_ros.demo.plan import MODELS, TARGET, Outcome, Plan, StepFailed, say, step
from retain_ros.demo.report import summary_text, write_strip
from retain_ros.demo.session import LiveSession


def run_live(session: LiveSession, plan: Plan, outcome: Outcome) -> None:
    """Steps 1-3."""
    step(outcome, 1, f"start sim_robot_node + policy_node (embedded base + task-FT, alpha {plan.live_alphas[0]})")
    session.start()
    outcome.weights_ids[str(plan.live_alphas[0])] = session.status()["weights_id"]
    outcome.steps["1"] = "ok"
    step(outcome, 2, f"episodes at alpha {plan.live_alphas[0]}, recorded to {session.out / 'bag'}")
    run_episodes(session, plan, plan.live_alphas[0], outcome)
    outcome.steps["2"] = "ok"
    step(outcome, 3, f"live alpha change {plan.live_alphas[0]} -> {plan.live_alphas[1]} (parameter service), "
                     "same episodes again; then each instruction at its own recipe")
    status, waited = session.change_alpha(plan.live_alphas[1])
    outcome.weights_ids[str(plan.live_alphas[1])] = status["weights_id"]
    outcome.reload_s, outcome.status_after_s = status["reload_s"], waited
    say(f"~/status: weights {status['weights_id'][:12]} after {waited:.2f} s (node re-merge + swap "
        f"{status['reload_s']:.3f} s)")
    run_episodes(session, plan, plan.live_alphas[1], outcome)
    items = plan.instruction_alphas()
    say(f"per-instruction recipes: instruction_alphas {items} (one node, each task at its own merge)")
    session.set_instruction_alphas(items)
    for task, variation in plan.routed_settings:
        episode = session.run_episode(task, variation, plan.seed, "routed")
        outcome.routed.append(episode)
        served = episode["serving"]
        how = ("from the recipe cache" if served["cached"] else f"merged, ready {served['reload_s']:.3f} s after "
               "the instruction")
        say(f"  routed {task}/{variation}: alphas {served['recipe']} ({how}; swap {served['swap_s'] * 1e3:.2f} ms "
            f"on the control thread): {'success' if episode['success'] else 'no success'} "
            f"(reward {episode['reward']:.2f})")
    run_steered(session, plan, outcome)
    outcome.steps["3"] = "ok"


def run_steered(session: LiveSession, plan: Plan, outcome: Outcome) -> None:
    """The generalist episode again with value-guided steering on (the embedded value function), then off again."""
    task, variation = plan.settings[-1]
    session.set_steering("value", MODELS / "value")
    say(f"value-guided steering on: {task}/{variation} at its recipe, K = 10 samples per chunk, the value "
        "function's best executed")
    episode = session.run_episode(task, variation, plan.seed, "routed + V-GPS")
    steering = session.status().get("steering", {})
    outcome.steered = {**episode, "samples": steering.get("samples"), "last_value": steering.get("value")}
    session.set_steering("none")
    say(f"  {task}/{variation} + V-GPS: {'success' if episode['success'] else 'no success'} "
        f"(reward {episode['reward']:.2f}); steering off again")


def run_episodes(session: LiveSession, plan: Plan, alpha: float, outcome: Outcome) -> None:
    total = len(plan.settings) * plan.episodes
    for i, (task, variation) in enumerate(plan.settings):
        for k in range(plan.episodes):
            n = i * plan.episodes + k + 1
            episode = session.run_episode(task, variation, plan.seed + k, alpha)
            outcome.episodes.append(episode)
            say(f"  [{n}/{total}] alpha {alpha} {task}/{variation} seed {plan.seed + k}: "
                f"{'success' if episode['success'] else 'no success'} (reward {episode['reward']:.2f}, "
                f"{episode['sim_time_s']:.1f} s simulated, {episode['wall_s']:.1f} s wall)")


def record_heldout(out: Path, plan: Plan) -> list[Path]:
    """Expert demonstrations of the target task in the OOD setting, one rosbag2 each (as `retain-sim collect --bag`)."""
    from retain_ros.sim.collect import CollectConfig, collect

    cfg = CollectConfig(tasks=(TARGET,), variation=plan.ood_variation, episodes=plan.heldout_episodes,
                        out_dir=out / "heldout", seed=plan.heldout_seed, workers=1, bag=True, image_size=64)
    collect(cfg, progress=False)
    return sorted(p for p in (out / "heldout" / "bags").iterdir() if p.is_dir())


def run_replay(out: Path, plan: Plan, outcome: Outcome) -> None:
    """Step 4: held-out OOD expert bags, scored at every alpha by `retain-eval bag` (in-process) against the expert."""
    import torch

    from retain_ros.evaluate.bag_eval import BagEvalConfig, evaluate_bags

    heldout = out / "heldout" / "bags"
    step(outcome, 4, f"retain-sim collect --tasks {TARGET} --variation {plan.ood_variation} --episodes "
                     f"{plan.heldout_episodes} --seed {plan.heldout_seed} --bag; retain-eval bag {heldout}/* --alpha "
                     f"{','.join(str(a) for a in plan.replay_alphas)} --target action")
    torch.set_num_threads(1)
    bags = record_heldout(out, plan)
    say(f"recorded {len(bags)} held-out expert bag(s) of {TARGET}/{plan.ood_variation} in {heldout}")
    cfg = BagEvalConfig(bags=bags, base=MODELS / "base", finetuned=[MODELS / "task_ft"], alphas=plan.replay_alphas,
                        out=out / "replay", target="action", every=plan.every, resamples=200)
    _, paths = evaluate_bags(cfg)
    report = json.loads(Path(paths["json"]).read_text())
    for label in report["labels"]:
        agg = report["aggregate"][label]
        outcome.replay[label] = {k: agg.get(k) for k in ("mse", "mae", "gripper_accuracy", "observations")}
    outcome.files.update({k: str(v) for k, v in paths.items()})
    outcome.steps["4"] = "ok"


def run(out: Path, plan: Plan, outcome: Outcome) -> None:
    """All five steps; the live session is closed (bag finished, nodes stopped) before the replay needs the CPU."""
    session = LiveSession(out, plan)
    try:
        run_live(session, plan, outcome)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish; it kills what hangs
        try:
            session.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    outcome.files["bag"] = str(out / "bag")  # finished: the recorder was closed with the session
    run_replay(out, plan, outcome)
    step(outcome, 5, "summary, plots and an episode strip")
    outcome.files["strip"] = str(write_strip(out, outcome))
    outcome.steps["5"] = "ok"


FIXES = {"1": "check that `make venv` finished (rclpy from PyPI) and read logs/*.log in the output folder",
         "2": "read logs/*.log in the output folder; on a very busy machine try --quick",
         "3": "read logs/retain_policy.log (the live re-merge logs its error there)",
         "4": "re-run the collection and `retain-eval bag` with the arguments printed above",
         "5": "check that the output folder is writable"}


OUT_MARKER = ".retain_demo_output"  # written into every folder the demo makes; only such a folder is ever replaced


def prepare_out(out: Path) -> None:
    """Make an empty output folder: replace one an earlier demo made, refuse any other non-empty folder.

    Raises:
        ConfigError: `out` is a file, or a non-empty folder the demo did not make (it is never deleted).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the demo's output")
    if out.is_dir() and any(out.iterdir()):
        if not (out / OUT_MARKER).is_file():
            raise ConfigError(f"--out {out} is a non-empty folder the demo did not make; nothing was deleted. Pass a "
                              "new or empty folder (the default is demo_out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text("made by python -m retain_ros.demo; the next run replaces this folder\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retain_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out",
                        help="output folder (an earlier demo's output is replaced; any other non-empty folder is "
                             "refused)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per setting and alpha (default 1)")
    parser.add_argument("--quick", action="store_true", help="the reduced CI form: 3 s episodes, 3 replay alphas")
    parser.add_argument("--variation", default="viewpoint",
                        help="the OOD variation of the target task (default viewpoint: where merges differ most in "
                             "retain-eval sim)")
    parser.add_argument("--episode-timeout", type=float, help="simulated seconds per episode (default: the task's "
                        "own limit, 7-16 s; quick: 3)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    try:
        prepare_out(out)
    except ConfigError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, max(1, args.episodes), args.episode_timeout, args.variation)
    outcome = Outcome(out=str(out))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    started, code = time.perf_counter(), 0
    say(f"retain_ros demo: output folder {out}")
    try:
        run(out, plan, outcome)
    except KeyboardInterrupt:
        code = 130
        outcome.steps.update({k: "interrupted" for k, v in outcome.steps.items() if v == "running"})
        say("\ninterrupted: every process the demo started has been stopped")
    except (StepFailed, ConfigError, AssertionError, OSError, RuntimeError) as exc:
        code = 1
        failed = next((k for k, v in outcome.steps.items() if v == "running"), "?")
        outcome.steps[failed] = "FAILED"
        say(f"\ndemo step {failed} failed: {exc}\nfix: {FIXES.get(failed, 'see the message above')}")
    outcome.steps.update({k: "FAILED" for k, v in outcome.steps.items() if v == "running"})
    (out / "summary.json").write_text(json.dumps(outcome.__dict__, indent=2, default=str))
    text = summary_text(outcome, plan) + f"\n  total {time.perf_counter() - started:.0f} s; output folder: {out}"
    (out / "summary.txt").write_text(text + "\n")
    say(text)
    return code or (0 if len(outcome.steps) == 5 and all(v == "ok" for v in outcome.steps.values()) else 1)


if __name__ == "__main__":
    sys.exit(main())
