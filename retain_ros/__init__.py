"""retain_ros: RETAIN-merged vision-language-action policies on a Franka arm with ROS 2."""

__version__ = "0.1.0"
