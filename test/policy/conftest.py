"""Fixtures of the policy tests: a tiny random reference VLA and its checkpoint on disk."""

from __future__ import annotations

import pytest
from policy_helpers import tiny_config, tiny_stats

from retain_ros.policy.reference_policy import random_policy


@pytest.fixture
def tiny_policy():
    return random_policy(tiny_config(), seed=0, stats=tiny_stats())


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_policy):
    return tiny_policy.save_pretrained(tmp_path / "tiny")
