"""The policy node's plain logic, shared with offline evaluation: no rclpy, no ROS message classes.

Message readers (`messages`), stream buffers with freshness rules (`streams`), the node's inputs -> observation
(`inputs`), chunk -> safe trajectory (`chunk_executor`) and the parameter table (`params`). `retain_ros/ros/` wraps them
in the node; `retain_ros/evaluate/` runs them on recorded bags, so a replayed observation is built by the node's code.
"""
