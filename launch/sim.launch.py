"""Simulated FR3 tabletop + RETAIN policy node, wired through the same topics as the real robot.

    ros2 launch retain_ros sim.launch.py base_checkpoint:=base finetuned_checkpoints:="['ft1']" \
        checkpoint_root:=/path/to/checkpoints alpha:=0.5 task:=pick_red seed:=0

The same executables, params file and parameters that test/ros/test_sim_closed_loop.py starts by hand; the
policy node comes from policy.launch.py, so the two launches cannot drift apart. The simulated arm needs no first-run
care: the policy node starts armed, at full speed, with the simulator's topic gripper (control.params.SIM_OVERRIDES).
"""

import json
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from retain_ros.control.params import SIM_OVERRIDES


def generate_launch_description():
    share = get_package_share_directory("retain_ros")
    default_params = os.path.join(share, "config", "fr3_droid.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="policy node parameter file"),
        DeclareLaunchArgument("base_checkpoint", description="pretrained checkpoint (inside checkpoint_root)"),
        DeclareLaunchArgument("finetuned_checkpoints", default_value="['']",
                              description="finetuned checkpoints, YAML list"),
        DeclareLaunchArgument("checkpoint_root", description="checkpoints are only loaded from inside this folder"),
        DeclareLaunchArgument("alpha", default_value="0.5", description="RETAIN merge weight 0..1"),
        DeclareLaunchArgument("task", default_value="pick_red", description="simulated task (retain-sim list)"),
        DeclareLaunchArgument("variation", default_value="id", description="episode variation"),
        DeclareLaunchArgument("seed", default_value="0", description="episode seed"),
    ]
    sim = Node(
        package="retain_ros",
        executable="sim_robot_node",
        name="sim_robot",
        output="screen",
        parameters=[{
            "task": LaunchConfiguration("task"),
            "variation": LaunchConfiguration("variation"),
            "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
        }],
    )
    # the policy node exactly as on the robot: policy.launch.py with these arguments
    policy = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "policy.launch.py")),
        launch_arguments=({name: LaunchConfiguration(name) for name in
                           ("params_file", "base_checkpoint", "finetuned_checkpoints", "checkpoint_root", "alpha")}
                          | {name: value if isinstance(value, str) else json.dumps(value)
                             for name, value in SIM_OVERRIDES.items()}).items(),
    )
    return LaunchDescription([*args, sim, policy])
