"""Robot PC: the RETAIN policy node on a Franka driven by franka_ros2's fr3_arm_controller.

    ros2 launch retain_ros policy.launch.py base_checkpoint:=pi0_base finetuned_checkpoints:="['pi0_cube']" \
        checkpoint_root:=/data/checkpoints alpha:=0.5 [params_file:=/path/to/my.yaml] [use_sim_time:=false] \
        [start_paused:=true] [speed_scale:=0.3] [gripper_backend:=franka_gripper]

Starts exactly what test/ros starts by hand: executable `policy_node`, the params file, then these overrides. The
node starts paused: `ros2 service call /retain_policy/resume std_srvs/srv/Trigger` arms it (docs/robot.md).
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
        DeclareLaunchArgument("start_paused", default_value="true", description="wait for ~/resume before commanding"),
        DeclareLaunchArgument("speed_scale", default_value="0.3", description="fraction of the joint limits' speed"),
        DeclareLaunchArgument("gripper_backend", default_value="franka_gripper",
                              description="franka_gripper | topic (simulator) | none"),
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
                "start_paused": ParameterValue(LaunchConfiguration("start_paused"), value_type=bool),
                "speed_scale": ParameterValue(LaunchConfiguration("speed_scale"), value_type=float),
                "gripper_backend": LaunchConfiguration("gripper_backend"),
            },
        ],
    )
    return LaunchDescription([*args, policy])
