#!/usr/bin/env bash
# Point the ROS 2 wheels' exported CMake files at this environment's Python. The wheels (ros-jazzy-* on PyPI) are built
# on a machine whose Python lives in /opt/python/cpXY-cpXY/; their CMake config files name that path, so any CMake
# build against them (msg/install_into_venv.sh, or colcon in test/workspace/colcon_build_check.sh) fails until it is
# rewritten. Idempotent (a second run finds nothing to rewrite). Usage: msg/patch_wheel_cmake.sh VENV
set -euo pipefail
venv=$(cd "$1" && pwd)
py="$venv/bin/python"
include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

{ grep -rlZ --include='*.cmake' "/opt/python/$tag-$tag/" "$venv/share" 2>/dev/null || true; } \
  | xargs -0 -r sed -i -e "s#/opt/python/$tag-$tag/include/python$ver#$include#g" \
                       -e "s#/opt/python/$tag-$tag/lib/python$ver/site-packages#$site#g"
