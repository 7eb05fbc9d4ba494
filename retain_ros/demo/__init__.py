"""`make demo` (`python -m retain_ros.demo`): the simulated robot, the policy node, live merges, a bag and a report.

`main` runs the steps, `plan` says what they are, `session` drives the node processes (`ros/processes.py`: ROS
processes in an isolated domain), `report` prints the summary and writes the episode strip.
"""
