"""The demo's step 5: a strip of the first recorded episode as the cameras saw it, and the one-screen summary."""

from __future__ import annotations

from pathlib import Path

from retain_ros.control import messages
from retain_ros.demo.plan import CAMERAS, MARKER, TARGET, Outcome, Plan, StepFailed


def write_strip(out: Path, outcome: Outcome, frames: int = 8) -> Path:
    """Step 5's picture: the first recorded episode as the cameras saw it, laid out like `retain-sim render`."""
    from PIL import Image, ImageDraw
    from rosbags.highlevel import AnyReader

    from retain_ros.sim.strip import frame_indices, save_strip

    images: dict[str, list] = {t: [] for t in CAMERAS}
    marks: list[int] = []
    with AnyReader([out / "bag"]) as reader:
        for conn, log_ns, raw in reader.messages([c for c in reader.connections if c.topic in (*CAMERAS, MARKER)]):
            if conn.topic == MARKER:
                marks.append(log_ns)
            elif len(marks) == 1:
                msg = reader.deserialize(raw, conn.msgtype)
                images[conn.topic].append(messages.image_to_rgb(msg))  # the node's decoder: any encoding it takes
    if not all(images.values()):
        raise StepFailed("no camera images of the first episode in the bag; see logs/sim_robot.log")
    first, size = outcome.episodes[0], images[CAMERAS[0]][0].shape[0]
    strip = Image.new("RGB", (200 + frames * (size + 2), 2 * (size + 2)), "white")
    draw = ImageDraw.Draw(strip)
    for row, (topic, shots) in enumerate(images.items()):
        for i, k in enumerate(frame_indices(len(shots), frames)):
            strip.paste(Image.fromarray(shots[k]), (200 + i * (size + 2), row * (size + 2)))
        draw.multiline_text((4, 4 + row * (size + 2)), f"{first['task']}\n{first['variation']}, alpha {first['alpha']}"
                            f"\n{topic.split('/')[2]}: {'success' if first['success'] else 'no success'}", fill="black")
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
