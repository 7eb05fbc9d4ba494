"""Fixtures of the ROS tests: per-test ROS environment, tiny checkpoints, node processes and an observer node."""

from __future__ import annotations

import os

import pytest
from ros_helpers import FASTDDS_PROFILE, NodeProcess, Observer, make_checkpoints, next_domain_id, ros_env


@pytest.fixture(scope="session", autouse=True)
def _ros_process_env(tmp_path_factory):
    """The test process's own DDS settings (read once, when its first participant is created)."""
    root = tmp_path_factory.mktemp("ros_env")
    (root / "profile.xml").write_text(FASTDDS_PROFILE)
    (root / "log").mkdir()
    saved = {k: os.environ.get(k) for k in ("FASTRTPS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                            "ROS_LOG_DIR")}
    os.environ.update(FASTRTPS_DEFAULT_PROFILES_FILE=str(root / "profile.xml"),
                      ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(root / "log"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """(root, base, [ft1]) of a tiny reference VLA; base and finetuned have unrelated weights."""
    root = tmp_path_factory.mktemp("checkpoints")
    base, finetuned = make_checkpoints(root)
    return root, base, finetuned


@pytest.fixture
def ros(tmp_path):
    """(domain id, env for node processes, observer, spawn) for one test; everything is stopped afterwards."""
    domain = next_domain_id()
    env = ros_env(tmp_path, domain)
    observer = Observer(domain)
    processes = []

    def spawn(module: str, args: list[str], name: str) -> NodeProcess:
        proc = NodeProcess(module, args, env, tmp_path / f"{name}.log")
        processes.append(proc)
        return proc

    yield domain, env, observer, spawn
    for proc in processes:
        proc.stop()
    observer.close()
