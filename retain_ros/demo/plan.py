"""The demo's plan (what one run does) and outcome (what it measured), shared by its steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from retain_ros.bag_types import ACTION_CHUNK
from retain_ros.paths import embedded_models_dir
from retain_ros.topics import Topics

MODELS = embedded_models_dir()
TARGET = "push_red_to_purple"
MARKER = "/retain_demo/episode_start"  # one message per episode: splits the bag for `retain-eval bag --episode-topic`
NODE_TOPICS = {"/retain_policy/action_chunk": ACTION_CHUNK, "/retain_policy/status": "std_msgs/msg/String",
               "/sim_robot/episode": "std_msgs/msg/String", MARKER: "std_msgs/msg/String"}
CAMERAS = (Topics().exterior_image, Topics().wrist_image)


@dataclass
class Plan:
    """What one run does; `--quick` is the CI form (shorter episodes, fewer replay alphas, sparser replay)."""

    settings: list[tuple[str, str]]
    live_alphas: tuple[float, float] = (0.5, 0.9)
    replay_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    episodes: int = 1
    timeout_s: float | None = None  # simulated seconds per episode; None = the task's own step limit
    every: int = 2
    seed: int = 1000  # away from the training seeds, as `retain-eval sim`
    heldout_episodes: int = 3  # expert demos of the OOD setting recorded for the replay step
    heldout_seed: int = 3000  # away from the training and closed-loop seeds
    routed_alpha: float = 0.9  # step 3: the target at this alpha, every other task at the base

    @property
    def routed_settings(self) -> list[tuple[str, str]]:
        """Step 3's back-to-back episodes with one node: target, generalist, target again (a cached recipe)."""
        return [self.settings[0], self.settings[-1], self.settings[0]]

    def instruction_alphas(self) -> list[str]:
        """The node's `instruction_alphas` for step 3: the target's instruction at `routed_alpha`, the rest at 0."""
        from retain_ros.sim import task_suite  # noqa: F401  (registers the tasks)
        from retain_ros.sim.tasks import SUITE

        return [f"{SUITE.get(TARGET).instruction}={self.routed_alpha:g}", ".*=0"]  # no regex characters in it

    @property
    def ood_variation(self) -> str:
        """The OOD variation of the target task (the second setting)."""
        return self.settings[1][1]

    @classmethod
    def make(cls, quick: bool, episodes: int, timeout_s: float | None, variation: str) -> Plan:
        settings = [(TARGET, "id"), (TARGET, variation), ("pick_red", "id")]
        if quick:
            return cls(settings, replay_alphas=(0.0, 0.5, 1.0), episodes=episodes, timeout_s=timeout_s or 3.0,
                       every=5, heldout_episodes=1)
        return cls(settings, episodes=episodes, timeout_s=timeout_s)

    def limit_s(self, task: str) -> float:
        """Episode timeout in simulated seconds: the task's own limit (as `retain-eval sim`) unless one was given."""
        if self.timeout_s:
            return self.timeout_s
        from retain_ros.sim import task_suite  # noqa: F401  (registers the tasks)
        from retain_ros.sim.tasks import SUITE

        return SUITE.get(task).max_steps / 15.0


@dataclass
class Outcome:
    """What the run measured (summary.json is this as a dict), kept so that a failed run still reports its part."""

    out: str
    steps: dict[str, str] = field(default_factory=dict)
    episodes: list[dict] = field(default_factory=list)
    weights_ids: dict[str, str] = field(default_factory=dict)
    reload_s: float | None = None
    status_after_s: float | None = None
    routed: list[dict] = field(default_factory=list)
    steered: dict = field(default_factory=dict)
    replay: dict[str, dict] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class StepFailed(Exception):
    """A demo step failed; the message names the step, what happened and the fix."""


def say(text: str) -> None:
    print(text, flush=True)  # flushed: `make demo | tee` shows progress as it happens


def step(outcome: Outcome, number: int, title: str) -> None:
    outcome.steps[f"{number}"] = "running"
    say(f"\n=== step {number}/5: {title} ===")
