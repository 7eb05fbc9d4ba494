"""`pip install -e .` of retain_ros (the pip-only `.venv`); colcon on a robot PC builds with CMakeLists.txt instead.

The console scripts are in setup.cfg, the one list both routes read.
"""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "retain_ros"


def data_tree(folder: str, pattern: str = "*") -> list[tuple[str, list[str]]]:
    """Install every file matching `pattern` under `folder` into share/retain_ros/<folder>, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(f"{folder}/**/{pattern}", recursive=True)):
        if os.path.isfile(path):
            entries.setdefault(f"share/{PACKAGE}/{os.path.dirname(path)}", []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    package_data={PACKAGE: ["sim/assets/*", "sim/assets/**/*", "models/*/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *data_tree("launch"),
        *data_tree("config"),
        *data_tree("msg", "*.msg"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="retain_ros maintainers",
    maintainer_email="retain-ros@example.org",
    description="RETAIN-merged vision-language-action policies on a Franka arm with ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
)
