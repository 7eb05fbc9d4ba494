#!/usr/bin/env bash
# Build retain_ros_msgs with CMake (no colcon, no ROS install) and install it into a pip-only virtual environment.
# Usage: msg/install_into_venv.sh VENV BUILD_DIR
# The ROS 2 wheels' exported CMake files name the wheel build machine's Python (/opt/python/cpXY-cpXY/...); they are
# pointed at this environment's Python first. On a robot PC, colcon builds this package instead (README).
set -euo pipefail
venv=$(cd "$1" && pwd)
build=$2
src=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

grep -rlZ --include='*.cmake' "/opt/python/$tag-$tag/" "$venv/share" 2>/dev/null \
  | xargs -0 -r sed -i -e "s#/opt/python/$tag-$tag/include/python$ver#$include#g" \
                       -e "s#/opt/python/$tag-$tag/lib/python$ver/site-packages#$site#g"

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
