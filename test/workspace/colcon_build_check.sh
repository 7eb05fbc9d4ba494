#!/usr/bin/env bash
# What a robot engineer does, checked end to end: the repository in ws/src/retain_ros, a plain `colcon build`, then
# `source install/setup.bash` gives the node, its executables and the messages (retain_ros_msgs).
#
# Usage: [COLCON=path/to/colcon] test/workspace/colcon_build_check.sh [--clone] VENV [WORKSPACE]
#   VENV       stands in for /opt/ros/<distro>: a virtual environment with the ROS 2 Jazzy wheels (requirements.txt,
#              requirements-msgs.txt); CMake finds its python3.
#   COLCON     the colcon to run (default: `colcon` on PATH, VENV/bin first); requirements-colcon.txt lists what it
#              needs (`make check-workspace` installs it into .venv-colcon).
#   WORKSPACE  where to make the workspace (default: a new temporary folder, removed afterwards).
#   --clone    `git clone` the repository (its committed HEAD) into src/ instead of copying the working tree's files
#              (tracked and untracked-but-not-ignored, i.e. what a clone would hold, with uncommitted edits).
# rosdep: when rosdep is installed and has its database (`rosdep update`, from the internet), the check lists
# `rosdep keys --from-paths src --ignore-src` (less the packages VENV holds) and fails on the key retain_ros_msgs;
# without the database it says so and goes on. `rosdep install` (resolution to apt packages) is not run here.
# Jobs: MAKEFLAGS (e.g. MAKEFLAGS=-j1) is passed on to the build.
set -euo pipefail

clone=0
if [ "${1:-}" = "--clone" ]; then clone=1; shift; fi
[ $# -ge 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
venv=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${2:-}" ]; then
  mkdir -p "$2"; ws=$(cd "$2" && pwd)
else
  ws=$(mktemp -d "${TMPDIR:-/tmp}/retain_ros_ws.XXXXXX"); trap 'rm -rf "$ws"' EXIT
fi
step() { printf '\n== %s\n' "$*"; }
fail() { echo "colcon_build_check: FAILED: $*" >&2; exit 1; }

colcon=${COLCON:-colcon}
case "$colcon" in */*) colcon="$(cd "$(dirname "$colcon")" && pwd)/$(basename "$colcon")" ;; esac
for tool in cmake git; do command -v "$tool" > /dev/null || fail "$tool not found"; done

# The stand-in for `source /opt/ros/jazzy/setup.bash`: the wheels' prefix on every search path, and nothing of this
# repository (no PYTHONPATH, no install space from elsewhere).
"$repo/msg/patch_wheel_cmake.sh" "$venv"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
unset PYTHONPATH COLCON_PREFIX_PATH PYTHONHOME
export PYTHONDONTWRITEBYTECODE=1
command -v "$colcon" > /dev/null || fail "$colcon not found (pip install -r requirements-colcon.txt)"

step "workspace $ws: src/retain_ros"
rm -rf "$ws/src" "$ws/build" "$ws/install" "$ws/log"; mkdir -p "$ws/src"
if [ "$clone" = 1 ]; then
  git clone -q "$repo" "$ws/src/retain_ros"
else
  mkdir "$ws/src/retain_ros"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
     | tar --null -T - -cf -) | tar -xf - -C "$ws/src/retain_ros"
fi
cd "$ws"

step "colcon list"
"$colcon" list | tee "$ws/colcon_list.txt"
[ "$(wc -l < "$ws/colcon_list.txt")" = 1 ] && grep -q '^retain_ros	src/retain_ros	(ros.ament_cmake)$' "$ws/colcon_list.txt" \
  || fail "colcon should find exactly one package, retain_ros (ros.ament_cmake)"

rosdep=$(dirname "$(command -v "$colcon")")/rosdep
[ -x "$rosdep" ] || rosdep=rosdep
if ! command -v "$rosdep" > /dev/null; then
  step "rosdep not installed: keys not listed"
elif "$rosdep" keys --from-paths src --ignore-src > "$ws/rosdep_keys.txt" 2> "$ws/rosdep_keys.err"; then
  step "rosdep keys --from-paths src --ignore-src"
  sort "$ws/rosdep_keys.txt" | tr '\n' ' '; echo
  ! grep -qx 'retain_ros_msgs' "$ws/rosdep_keys.txt" || fail "rosdep would look for the key retain_ros_msgs"
elif grep -q 'not been initialized' "$ws/rosdep_keys.err"; then
  step "rosdep has no database here (rosdep init / rosdep update need the internet): keys not listed"
else
  cat "$ws/rosdep_keys.err" >&2; fail "rosdep keys --from-paths src --ignore-src"
fi

step "colcon build"
"$colcon" build || { tail -n 60 "$ws"/log/latest_build/retain_ros/stdout_stderr.log >&2; fail "colcon build"; }

step "source install/setup.bash; the package, its executables and the messages"
set +u; source "$ws/install/setup.bash"; set -u
prefix="$ws/install/retain_ros"
for exe in policy_node sim_robot_node retain-merge retain-sim retain-train retain-eval; do
  [ -x "$prefix/lib/retain_ros/$exe" ] || fail "lib/retain_ros/$exe is not installed"
done
"$prefix/lib/retain_ros/retain-merge" --help > /dev/null || fail "lib/retain_ros/retain-merge --help"
for f in package.xml launch/policy.launch.py launch/sim.launch.py config/fr3_droid.yaml msg/ActionChunk.msg \
         msg/GroupAlpha.msg; do
  [ -f "$prefix/share/retain_ros/$f" ] || fail "share/retain_ros/$f is not installed"
done
WS="$ws" python - <<'EOF'
import os
from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory
from rclpy.serialization import deserialize_message, serialize_message

import retain_ros
import retain_ros.ros.policy_node  # noqa: F401 (imports rclpy, the messages, torch)
import retain_ros_msgs
from retain_ros_msgs.msg import ActionChunk, GroupAlpha

install = Path(os.environ["WS"]) / "install"
for name, module in (("retain_ros", retain_ros), ("retain_ros_msgs", retain_ros_msgs)):
    assert install in Path(module.__file__).parents, f"{name} imported from {module.__file__}, not from {install}"
    assert Path(get_package_prefix(name)) == install / "retain_ros", (name, get_package_prefix(name))
share = Path(get_package_share_directory("retain_ros_msgs"))
assert (share / "msg" / "ActionChunk.msg").is_file() and (share / "msg" / "GroupAlpha.msg").is_file(), share
package = Path(retain_ros.__file__).parent
assert (package / "models" / "base" / "model.safetensors").is_file(), "models/ data not installed"
assert (package / "sim" / "assets" / "fr3.xml").is_file(), "sim/assets not installed"
chunk = ActionChunk()
assert deserialize_message(serialize_message(chunk), ActionChunk) == chunk  # the C type support loads
GroupAlpha()
print("retain_ros and retain_ros_msgs import from", install)
print("retain_ros_msgs prefix:", get_package_prefix("retain_ros_msgs"))
EOF
if command -v ros2 > /dev/null; then
  step "ros2 pkg prefix retain_ros_msgs"
  ros2 pkg prefix retain_ros_msgs
  ros2 pkg executables retain_ros
fi

step "a second colcon build (nothing changed) still works"
"$colcon" build > /dev/null || fail "second colcon build"

echo "colcon_build_check: OK"
