"""Exported episodes written as a LeRobot dataset with LeRobot's own classes, ready for `lerobot-train`.

Features, DROID-style (the names LeRobot's DROID port and pi0 / pi0.5 / SmolVLA configs use for the two cameras):
`observation.images.exterior_1_left` and `observation.images.wrist_left` (other camera names:
`observation.images.<name>`), `observation.state` (7 joint positions in rad + gripper position 0 open .. 1 closed)
and `action` (7 DROID-normalised joint velocities + gripper position), at the export's fps. Images are stored as
PNG frames by default (lossless: the round trip gives the same pixels); `videos=True` encodes MP4 as LeRobot's
recorder does. LeRobot is imported only here, so the export runs in `.venv-lerobot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retain_ros.errors import ConfigError
from retain_ros.evaluate.bag_export import ExportedEpisode

DROID_IMAGE_KEYS = {"exterior": "observation.images.exterior_1_left", "wrist": "observation.images.wrist_left"}
STATE, ACTION = "observation.state", "action"


def image_key(camera: str) -> str:
    """The dataset feature of a camera."""
    return DROID_IMAGE_KEYS.get(camera, f"observation.images.{camera}")


def dataset_features(episode: ExportedEpisode, joint_names: Sequence[str], videos: bool) -> dict[str, dict]:
    """The exported frames' feature specs, as LeRobot declares them."""
    features = {image_key(cam): {"dtype": "video" if videos else "image", "shape": tuple(frames.shape[1:]),
                                 "names": ["height", "width", "channels"]}
                for cam, frames in episode.images.items()}
    names = [*joint_names, "gripper"]
    features[STATE] = {"dtype": "float32", "shape": (len(names),), "names": names}
    features[ACTION] = {"dtype": "float32", "shape": (len(names),), "names": names}
    return features


def write_dataset(episodes: Sequence[ExportedEpisode], out: str | Path, fps: int, joint_names: Sequence[str],
                  repo_id: str = "local/retain_demos", videos: bool = False) -> Path:
    """Write `episodes` as a LeRobot dataset at `out` (which must not exist); returns `out`.

    Raises:
        ConfigError: LeRobot missing, `out` existing, no episodes, or episodes of different image sizes.
    """
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:
        raise ConfigError("LeRobot is not installed in this environment; run the export in .venv-lerobot "
                          "(`make lerobot-env`, then .venv-lerobot/bin/retain-data export ...)") from None
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists; choose a new --out (a LeRobot dataset is written into an empty place)")
    if not episodes:
        raise ConfigError("no episodes to export")
    features = dataset_features(episodes[0], joint_names, videos)
    for ep in episodes[1:]:
        if dataset_features(ep, joint_names, videos) != features:
            raise ConfigError(f"episode {ep.name} has other cameras or image sizes than {episodes[0].name}; one "
                              "dataset holds one layout: export them separately")
    dataset = LeRobotDataset.create(repo_id, fps=int(fps), features=features, root=out, robot_type="fr3",
                                    use_videos=videos)
    for ep in episodes:
        for t in range(len(ep.actions)):
            frame = {image_key(cam): frames[t] for cam, frames in ep.images.items()}
            frame.update({STATE: ep.state[t], ACTION: ep.actions[t], "task": ep.task})
            dataset.add_frame(frame)
        dataset.save_episode()
    dataset.finalize()
    return out
