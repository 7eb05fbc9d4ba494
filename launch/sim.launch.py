"""Simulated FR3 tabletop + RETAIN policy node, wired through the same topics as the real robot.

    ros2 launch retain_ros sim.launch.py base_checkpoint:=base finetuned_checkpoints:="['ft1']" \
        checkpoint_root:=/path/to/checkpoints alpha:=0.5 task:=pick_red seed:=0

The same executables, params file and parameters that test/ros/test_sim_closed_loop.py starts by hand.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("retain_ros"), "config", "fr3_droid.yaml")
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
    policy = Node(
        package="retain_ros",
        executable="policy_node",
        name="retain_policy",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "base_checkpoint": LaunchConfiguration("base_checkpoint"),
                "finetuned_checkpoints": ParameterValue(LaunchConfiguration("finetuned_checkpoints"), value_type=None),
                "checkpoint_root": LaunchConfiguration("checkpoint_root"),
                "alpha": ParameterValue(LaunchConfiguration("alpha"), value_type=float),
            },
        ],
    )
    return LaunchDescription([*args, sim, policy])
