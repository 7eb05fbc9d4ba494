"""Robot PC: the RETAIN policy node on a Franka driven by franka_ros2's fr3_arm_controller.

    ros2 launch retain_ros policy.launch.py base_checkpoint:=pi0_base finetuned_checkpoints:="['pi0_cube']" \
        checkpoint_root:=/data/checkpoints alpha:=0.5 [params_file:=/path/to/my.yaml] [use_sim_time:=false]

Starts exactly what test/ros starts by hand: executable `policy_node`, the params file, then these overrides.
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
        DeclareLaunchArgument("device", default_value="cpu", description="torch device"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
    ]
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
                "device": LaunchConfiguration("device"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
    )
    return LaunchDescription([*args, policy])
