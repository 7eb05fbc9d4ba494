#!/usr/bin/env bash
# Build retain_ros_msgs with CMake (no colcon, no ROS install) and install it into a pip-only virtual environment.
# Usage: msg/install_into_venv.sh VENV BUILD_DIR
# The ROS 2 wheels' exported CMake files name the wheel build machine's Python (/opt/python/cpXY-cpXY/...); they are
# pointed at this environment's Python first (patch_wheel_cmake.sh). On a robot PC, colcon builds this package as part
# of retain_ros instead (the root CMakeLists.txt; README).
set -euo pipefail
venv=$(cd "$1" && pwd)
build=$2
src=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
"$src/patch_wheel_cmake.sh" "$venv"

rm -rf "$build"; mkdir -p "$build"  # a fresh configure: the cache would pin an old environment
cd "$build"
AMENT_PREFIX_PATH="$venv" cmake "$src" -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > cmake.log 2>&1 \
  || { cat cmake.log; echo "retain_ros_msgs: CMake configure failed (log above)" >&2; exit 1; }
make -j"$(nproc)" install > make.log 2>&1 \
  || { tail -50 make.log; echo "retain_ros_msgs: build failed (log above)" >&2; exit 1; }
"$py" -c 'from retain_ros_msgs.msg import ActionChunk; ActionChunk()' \
  || { echo "retain_ros_msgs: built, but 'from retain_ros_msgs.msg import ActionChunk' fails in $venv" >&2; exit 1; }
echo "retain_ros_msgs installed into $venv"
