"""ROS 2 side: the policy node, the simulated-robot node, message <-> numpy conversion. Only this room imports rclpy."""
