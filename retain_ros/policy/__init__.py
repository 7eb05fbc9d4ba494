"""Policies: the observation -> action-chunk interface, the built-in reference VLA, preprocessing. No rclpy here."""

from retain_ros.policy.interface import (ActionChunk, ActionSpace, DROID_ACTION_SPACE, Observation, Policy,
                                         PolicySpec, load_policy, validate_observation)

__all__ = ["ActionChunk", "ActionSpace", "DROID_ACTION_SPACE", "Observation", "Policy", "PolicySpec", "load_policy",
           "validate_observation"]
