"""The demo's step 5: a strip of the first recorded episode as the cameras saw it, and the one-screen summary."""

from __future__ import annotations

from pathlib import Path

from retain_ros.control import messages
from retain_ros.demo.plan import CAMERAS, MARKER, TARGET, Outcome, Plan, StepFailed


def strip_episodes(outcome: Outcome) -> list[int]:
    """The episodes the strip shows: the target task in `id` at each live alpha (the failure next to the success)."""
    chosen: dict[float, int] = {}
    for k, e in enumerate(outcome.episodes):
        if (e["task"], e["variation"]) == (TARGET, "id"):
            chosen.setdefault(e["alpha"], k)
    return list(chosen.values()) or [0]


def write_strip(out: Path, outcome: Outcome, frames: int = 8) -> Path:
    """Step 5's picture: the target task at each live alpha as the cameras saw it, laid out like `retain-sim render`.

    Episode k of the bag is the stretch after its k-th episode marker (one per episode, in the order they ran).
    """
    from PIL import Image, ImageDraw
    from rosbags.highlevel import AnyReader

    from retain_ros.sim.strip import frame_indices, save_strip

    wanted = strip_episodes(outcome)
    images: dict[int, dict[str, list]] = {k: {t: [] for t in CAMERAS} for k in wanted}
    marks = 0
    with AnyReader([out / "bag"]) as reader:
        for conn, _, raw in reader.messages([c for c in reader.connections if c.topic in (*CAMERAS, MARKER)]):
            if conn.topic == MARKER:
                marks += 1
            elif marks - 1 in images:
                msg = reader.deserialize(raw, conn.msgtype)
                images[marks - 1][conn.topic].append(messages.image_to_rgb(msg))  # the node's decoder
    if not all(shots for per in images.values() for shots in per.values()):
        raise StepFailed("no camera images of a strip episode in the bag; see logs/sim_robot.log")
    size = images[wanted[0]][CAMERAS[0]][0].shape[0]
    rows = len(wanted) * len(CAMERAS)
    strip = Image.new("RGB", (200 + frames * (size + 2), rows * (size + 2)), "white")
    draw = ImageDraw.Draw(strip)
    row = 0
    for k in wanted:
        episode = outcome.episodes[k]
        for topic, shots in images[k].items():
            for i, j in enumerate(frame_indices(len(shots), frames)):
                strip.paste(Image.fromarray(shots[j]), (200 + i * (size + 2), row * (size + 2)))
            draw.multiline_text((4, 4 + row * (size + 2)),
                                f"{episode['task']}\n{episode['variation']}, alpha {episode['alpha']}\n"
                                f"{topic.split('/')[2]}: {'success' if episode['success'] else 'no success'}",
                                fill="black")
            row += 1
    return save_strip(strip, out / "episode_strip.png")


def summary_text(outcome: Outcome, plan: Plan) -> str:
    """The one-screen summary: success per setting and alpha, reload time, replay error per alpha, steps."""
    alphas = plan.live_alphas
    header = "".join(f"{'alpha ' + str(a):>12}" for a in alphas)
    lines = ["", "summary", f"  {'setting (live, in the simulator)':<42}{header}"]
    for task, variation in plan.settings:
        cells = []
        for a in alphas:
            eps = [e for e in outcome.episodes if (e["task"], e["variation"], e["alpha"]) == (task, variation, a)]
            cells.append(f"{sum(e['success'] for e in eps)}/{len(eps)}" if eps else "-")
        label = f"{task} / {variation} ({'target' if task == TARGET else 'generalist'})"
        lines.append(f"  {label:<42}" + "".join(f"{c:>12}" for c in cells))
    if outcome.reload_s is not None:
        lines.append(f"  live alpha change {alphas[0]} -> {alphas[1]}: re-merge + swap {outcome.reload_s:.3f} s, "
                     f"~/status showed the new weights after {outcome.status_after_s:.2f} s")
        lines.append("  weights ids: " + ", ".join(f"alpha {a}: {f[:12]}" for a, f in outcome.weights_ids.items()))
    if outcome.routed:
        lines += ["", "  per-instruction recipes, one node, back to back (instruction_alphas):"]
        for e in outcome.routed:
            served = e["serving"]
            how = ("cached: reference swap" if served["cached"] else
                   f"merged: ready {served['reload_s']:.3f} s after the instruction")
            lines.append(f"  {e['task'] + ' / ' + e['variation']:<40} alphas {served['recipe']:<6} "
                         f"{'success' if e['success'] else 'no success':<11} {how}, swap "
                         f"{served['swap_s'] * 1e3:.2f} ms")
    if outcome.steered:
        e = outcome.steered
        plain = next((r for r in outcome.routed if (r["task"], r["variation"]) == (e["task"], e["variation"])), None)
        off = ("success" if plain["success"] else "no success") if plain else "-"
        lines.append(f"  {e['task'] + ' / ' + e['variation']:<40} value-guided steering (K = {e['samples']}): off "
                     f"{off}, on {'success' if e['success'] else 'no success'} (reward {e['reward']:.2f})")
    if outcome.replay:
        lines += ["", f"  offline: error against held-out expert demos of {TARGET} / {plan.ood_variation} "
                      "(DROID actions)",
                  f"  {'replay alpha':<14}{'MSE':>14}{'MAE':>12}{'gripper acc':>13}{'obs':>7}"]
        for label, r in outcome.replay.items():
            fmt = [("n/a" if r[k] is None else f"{r[k]:.4f}") for k in ("mse", "mae", "gripper_accuracy")]
            lines.append(f"  {label:<14}{fmt[0]:>14}{fmt[1]:>12}{fmt[2]:>13}{r['observations']:>7}")
    lines += ["", "  steps: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.steps.items()))]
    lines += [f"  {name}: {path}" for name, path in outcome.files.items()]
    return "\n".join(lines)
