"""PNG strips of expert episodes, so a person can see a task and its variations at a glance.

One row per (variation, camera): `frames` images evenly spaced over the episode, labelled on the left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from retain_ros.errors import ConfigError
from retain_ros.sim.env import DEFAULT_IMAGE_SIZE, EnvConfig, TabletopEnv
from retain_ros.sim.episode import Episode, run_expert_episode
from retain_ros.sim.physics import CAMERAS

_LABEL_WIDTH = 190
_GAP = 2


def frame_indices(num_steps: int, frames: int) -> list[int]:
    """`frames` step indices spread evenly from the first to the last step."""
    return sorted({int(round(i)) for i in np.linspace(0, num_steps - 1, frames)})


def _row(episode: Episode, camera: str, frames: int, label: str) -> Image.Image:
    images = episode.observations[f"{camera}_image"]
    picks = [images[k] for k in frame_indices(len(images), frames)]
    size = images.shape[1]
    row = Image.new("RGB", (_LABEL_WIDTH + len(picks) * (size + _GAP), size), "white")
    for i, img in enumerate(picks):
        row.paste(Image.fromarray(img), (_LABEL_WIDTH + i * (size + _GAP), 0))
    ImageDraw.Draw(row).multiline_text((4, 4), label, fill="black")
    return row


def render_strip(task: str, variations: Sequence[str], seed: int = 0, frames: int = 6,
                 cameras: Sequence[str] = CAMERAS, image_size: int = DEFAULT_IMAGE_SIZE) -> Image.Image:
    """Run the expert on `task` in each variation and lay out frames of each camera.

    Args:
        task: task name.
        variations: variation names, one block of rows each.
        seed: episode seed.
        frames: frames per row.
        cameras: cameras to show ('exterior', 'wrist').
        image_size: rendered image side in pixels.

    Returns:
        The strip image.

    Raises:
        ConfigError: unknown names or a frame count below 1.
    """
    if frames < 1:
        raise ConfigError(f"--frames {frames} is impossible; show at least 1 frame")
    for cam in cameras:
        if cam not in CAMERAS:
            raise ConfigError(f"unknown camera '{cam}'; cameras: {', '.join(CAMERAS)}")
    rows = []
    for variation in variations:
        with TabletopEnv(task, variation, EnvConfig(image_size=image_size)) as env:
            episode = run_expert_episode(env, seed)
        outcome = "success" if episode.success else "FAILED"
        for cam in cameras:
            label = f"{task}\n{variation} / {cam}\nseed {seed}: {outcome}\n{episode.num_steps} steps"
            rows.append(_row(episode, cam, frames, label))
    width = max(r.width for r in rows)
    strip = Image.new("RGB", (width, sum(r.height + _GAP for r in rows)), "white")
    y = 0
    for r in rows:
        strip.paste(r, (0, y))
        y += r.height + _GAP
    return strip


def save_strip(image: Image.Image, path: Path) -> Path:
    """Save a strip as PNG, creating the parent directory.

    Raises:
        ConfigError: the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}; choose a writable --out") from exc
    return path
