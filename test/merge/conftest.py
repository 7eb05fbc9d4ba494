"""Fixtures of the merge tests."""

from __future__ import annotations

import subprocess

import pytest

from retain_ros.merge.cli import main


@pytest.fixture
def cli(capsys):
    """Run retain-merge's main() in this process and return (returncode, stdout, stderr) like a subprocess."""

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run
