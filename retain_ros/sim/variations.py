"""Named, seeded episode variations: the demo setting (`id`) and the out-of-distribution families.

- `id`: the task's nominal layout +-2 cm / +-0.15 rad, default lighting, colours and camera (a 50-demo collection).
- `position`: objects anywhere in the workspace, any yaw.
- `distractors`: the `id` layout plus unrelated objects on the table.
- `appearance`: the `id` layout under new lighting, table / background colours and object shades.
- `viewpoint`: the `id` layout seen from a perturbed exterior camera (azimuth, elevation, distance, field of view).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

import mujoco
import numpy as np

from retain_ros.errors import ConfigError
from retain_ros.sim.physics import CUBES, DISTRACTORS, PLATES


@dataclass(frozen=True)
class VariationConfig:
    """How one variation family perturbs an episode.

    Attributes:
        name: registry name.
        description: one line for `retain-sim list`.
        wide_positions: draw object positions over the whole workspace instead of around the nominal layout.
        position_jitter_m: half-range of position noise around the nominal layout (m).
        yaw_jitter_rad: half-range of yaw noise around the nominal layout (rad).
        num_distractors: unrelated objects put on the table.
        appearance: randomise lighting, table / floor / backdrop colours and object shades.
        camera_azimuth_rad: half-range of the exterior camera's rotation about the workspace (rad).
        camera_elevation_rad: half-range of its elevation change (rad).
        camera_distance_scale: half-range of its relative distance change.
        camera_fovy_deg: half-range of its field-of-view change (degrees).
    """

    name: str
    description: str
    wide_positions: bool = False
    position_jitter_m: float = 0.02
    yaw_jitter_rad: float = 0.15
    num_distractors: int = 0
    appearance: bool = False
    camera_azimuth_rad: float = 0.0
    camera_elevation_rad: float = 0.0
    camera_distance_scale: float = 0.0
    camera_fovy_deg: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.position_jitter_m <= 0.05:
            raise ConfigError(f"position_jitter_m={self.position_jitter_m} must be in [0, 0.05] m (the demo box)")
        if not 0 <= self.num_distractors <= len(DISTRACTORS):
            raise ConfigError(
                f"num_distractors={self.num_distractors} is impossible: the scene has {len(DISTRACTORS)} distractors"
            )
        if not 0.0 <= self.camera_azimuth_rad <= 0.8 or not 0.0 <= self.camera_elevation_rad <= 0.3:
            raise ConfigError("camera perturbation too large: azimuth <= 0.8 rad and elevation <= 0.3 rad keep the "
                              "workspace in view")
        if not 0.0 <= self.camera_distance_scale <= 0.3 or not 0.0 <= self.camera_fovy_deg <= 10.0:
            raise ConfigError("camera distance scale must be in [0, 0.3] and fovy change in [0, 10] degrees")


VARIATIONS: dict[str, VariationConfig] = {
    v.name: v
    for v in (
        VariationConfig("id", "demo setting: nominal layout +-2 cm, default lighting and camera"),
        VariationConfig("position", "objects anywhere in the workspace, any yaw", wide_positions=True),
        VariationConfig("distractors", "demo layout plus 3 unrelated objects", num_distractors=3),
        VariationConfig("appearance", "demo layout, new lighting, table/background colours, object shades",
                        appearance=True),
        VariationConfig("viewpoint", "demo layout, exterior camera moved (+-20 deg azimuth, +-7 deg elevation)",
                        camera_azimuth_rad=0.35, camera_elevation_rad=0.12, camera_distance_scale=0.12,
                        camera_fovy_deg=4.0),
    )
}
OOD_VARIATIONS = tuple(name for name in VARIATIONS if name != "id")


def unknown_name_error(kind: str, name: str, choices: list[str]) -> ConfigError:
    """A ConfigError that lists the valid choices and suggests the closest one."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {kind} '{name}'{hint} valid {kind}s: {', '.join(choices)}")


def get_variation(name: str, **overrides: object) -> VariationConfig:
    """Look up a variation by name, optionally overriding fields (validated).

    Raises:
        ConfigError: unknown name (with the valid names and a suggestion) or impossible overrides.
    """
    if name not in VARIATIONS:
        raise unknown_name_error("variation", name, list(VARIATIONS))
    return replace(VARIATIONS[name], **overrides) if overrides else VARIATIONS[name]


def apply_appearance(model: mujoco.MjModel, rng: np.random.Generator) -> None:
    """Randomise lighting, table / floor / backdrop colours and object shades in place (colour names stay true)."""
    key = model.light("key").id
    model.light_diffuse[key] = rng.uniform(0.3, 0.9) * np.ones(3) * rng.uniform(0.85, 1.0, size=3)
    direction = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), -1.0])
    model.light_dir[key] = direction / np.linalg.norm(direction)
    model.vis.headlight.ambient[:] = rng.uniform(0.15, 0.5)
    model.vis.headlight.diffuse[:] = rng.uniform(0.3, 0.6)
    for name in ("table_top", "floor", "backdrop", "table_legs"):
        model.geom(name).rgba[:3] = rng.uniform(0.15, 0.9, size=3)
    for name in CUBES + PLATES:
        rgba = model.geom(name).rgba
        rgba[:3] = np.clip(rgba[:3] * rng.uniform(0.75, 1.1) + rng.uniform(-0.06, 0.06, size=3), 0.0, 1.0)


def apply_viewpoint(model: mujoco.MjModel, variation: VariationConfig, rng: np.random.Generator) -> None:
    """Move the exterior camera on a sphere around the workspace target; it keeps looking at the target."""
    cam = model.camera("exterior").id
    target = model.body("workspace_target").pos
    offset = model.cam_pos[cam] - target
    distance = np.linalg.norm(offset)
    azimuth = np.arctan2(offset[1], offset[0]) + rng.uniform(-1, 1) * variation.camera_azimuth_rad
    elevation = np.arcsin(offset[2] / distance) + rng.uniform(-1, 1) * variation.camera_elevation_rad
    distance *= 1.0 + rng.uniform(-1, 1) * variation.camera_distance_scale
    model.cam_pos[cam] = target + distance * np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    model.cam_fovy[cam] += rng.uniform(-1, 1) * variation.camera_fovy_deg
