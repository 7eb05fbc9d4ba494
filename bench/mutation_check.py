"""Break the safety layer one piece at a time and show that a test catches each break.

Each mutation replaces one line of `retain_ros/control/chunk_executor.py` (a check_plan clause, the stop's shaping, the
stream ramp, the workspace check, the ~/home move, the planning start state) in a copy of the package, then runs the
executor's tests and 600 fuzz sequences against that copy in a child process. A mutation that no test catches is a
hole in the tests; the run exits 1 then.

    .venv/bin/python bench/mutation_check.py            # about 2 minutes on 2 cores
    .venv/bin/python bench/mutation_check.py --list     # the mutations only
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = "retain_ros/control/chunk_executor.py"
TESTS = ["test/ros/test_chunk_executor.py", "test/ros/test_executor_scenarios.py", "test/ros/test_control_loop.py",
         "test/ros/test_workspace.py"]
FUZZ_SEEDS = 600
COPIED = ("retain_ros", "test", "config", "package.xml", "pytest.ini")

# name -> (the line as it is, what it becomes)
MUTATIONS = {
    "check_plan: times": ("    if plan.times_s[0] <= 0 or (np.diff(plan.times_s) <= 0).any():", "    if False:"),
    "check_plan: point positions": ("    if (plan.positions < q_min).any() or (plan.positions > q_max).any():",
                                    "    if False:"),
    "check_plan: step speed": ("        if any((np.abs(s) > dq_max * (1.0 + 1e-6)).any() for s in speeds):",
                               "        if False:"),
    "check_plan: step ramp": ("        if any((np.abs(s[0] - start.velocities) > reach).any() for s in speeds):",
                              "        if False:"),
    "check_plan: final velocity": ("    if (plan.velocities[-1] != 0.0).any():", "    if False:"),
    "check_plan: spline positions": (
        "    if not within_positions(start, plan.positions, plan.velocities, plan.times_s, lo - 1e-6, hi + 1e-6):",
        "    if False:"),
    "check_plan: spline velocity and acceleration": ("    if any((r > 1.0 + 1e-6).any() for r in ratios):",
                                                     "    if False:"),
    "stop: constant deceleration whatever the room": (
        "        target = start.positions + np.sign(start.velocities) * travel",
        "        target = start.positions + start.velocities * duration / 2.0"),
    "stop: 5 rad/s^2 whatever speed_scale says": (
        "        gentle = max(min_time_s, _braking_time(v, dv, dq, np.minimum(self.config.stop_decel_rad_s2, "
        "self._ddq_max)))",
        "        gentle = max(min_time_s, _braking_time(v, dv, dq, np.full_like(v, self.config.stop_decel_rad_s2)))"),
    "stream ramp: the previous step's speed whatever the time": (
        "        return self._commanded_state(now_ns)[1]",
        "        return (self._previous.positions[0] - self._previous.start) / self._previous.times_s[0] "
        "if self._previous.velocities is None else self._commanded_state(now_ns)[1]"),
    "stream ramp: none": ("        lo, hi = np.maximum(-vmax, reference - reach), np.minimum(vmax, reference + reach)",
                          "        lo, hi = -vmax, vmax"),
    "stream: each joint clipped on its own": ("        if s_lo <= s_hi:", "        if False:"),
    "workspace: chunks unchecked": ("            reason = self.config.workspace.problem(plan.positions, plan.start)",
                                    "            reason = None"),
    "move: the path unchecked": ("            reason = self.config.workspace.problem(path, start.positions)",
                                 "            reason = None"),
    "move: timed at the full velocity limits": (
        "        dq_max = np.asarray(self.config.limits.dq_max, float) * speed_scale",
        "        dq_max = np.asarray(self.config.limits.dq_max, float)"),
    "move: no brake from a moving arm": (
        "        brake = self._brake(start, now_ns) if np.abs(start.velocities).max() > 1e-3 else None",
        "        brake = None"),
    "start state: at rest after a stop": (
        "            v = v_cmd if m.velocities is None else m.velocities + (v_cmd - v_then)",
        "            v = np.zeros(self.num_joints) if prev.is_stop else v_cmd"),
}

FUZZ = """
import sys
sys.path.insert(0, "test/ros")
import test_executor_fuzz as f
broken = [b for seed in range({n}) for b in f.run_sequence(seed)]
print(f"fuzz: {{len(broken)}} violations", broken[:1])
sys.exit(1 if broken else 0)
"""


def run_mutation(name: str, old: str, new: str) -> tuple[bool, str]:
    """(caught, by what) for one mutation, run in a copy of the package."""
    with tempfile.TemporaryDirectory(prefix="mutation_") as tmp:
        for part in COPIED:  # the tests run in the copy: `python -m` puts the working directory first on sys.path
            copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
            copy(REPO / part, Path(tmp) / part)
        path = Path(tmp) / TARGET
        text = path.read_text()
        if old and text.count(old) != 1:
            return False, f"the line to mutate is not in {TARGET} exactly once (update this script)"
        path.write_text(text.replace(old, new))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                               cwd=tmp, env=env, capture_output=True, text=True)
        if tests.returncode != 0:
            failed = [line for line in tests.stdout.splitlines() if line.startswith("FAILED")]
            return True, failed[0] if failed else "pytest failed"
        fuzz = subprocess.run([sys.executable, "-c", FUZZ.format(n=FUZZ_SEEDS)], cwd=tmp, env=env,
                              capture_output=True, text=True)
        if fuzz.returncode != 0:
            return True, fuzz.stdout.strip().splitlines()[-1] if fuzz.stdout.strip() else fuzz.stderr[-300:]
        return False, "no test failed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(MUTATIONS))
        return 0
    baseline, why = run_mutation("none", "", "")
    if baseline:
        print(f"the unmutated package already fails ({why}); fix that first")
        return 1
    missed = 0
    for name, (old, new) in MUTATIONS.items():
        started = time.monotonic()
        caught, why = run_mutation(name, old, new)
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}  {name}  ({time.monotonic() - started:.0f} s): {why}", flush=True)
    print(f"{len(MUTATIONS) - missed} of {len(MUTATIONS)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
