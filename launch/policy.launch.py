"""Robot PC: the RETAIN policy node on a Franka driven by franka_ros2's fr3_arm_controller.

    ros2 launch retain_ros policy.launch.py base_checkpoint:=pi0_base finetuned_checkpoints:="['pi0_cube']" \
        checkpoint_root:=/data/checkpoints [alpha:=0.5] [params_file:=/path/to/my.yaml] [use_sim_time:=false] \
        [start_paused:=true] [speed_scale:=0.3] [gripper_backend:=franka_gripper] [device:=cuda]

Starts exactly what test/ros starts by hand: executable `policy_node`, the params file, then the arguments given here.
An argument left out keeps the params file's value (the file is config/fr3_droid.yaml unless params_file says
otherwise), so a speed_scale set in your file is never replaced by a launch default; with the checkpoints in your
params file, `ros2 launch retain_ros policy.launch.py params_file:=/path/to/my.yaml` is enough. Values take the
parameter's declared type (`alpha:=1` is the double 1.0; strings are kept as written). The node starts paused:
`ros2 service call /retain_policy/resume std_srvs/srv/Trigger` arms it (docs/robot.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from retain_ros.control.params import launch_value

# launch argument -> what it overrides when given ('' = not given: the params file decides)
OPTIONAL = {
    "base_checkpoint": "pretrained checkpoint (inside checkpoint_root)",
    "checkpoint_root": "checkpoints are only loaded from inside this folder",
    "finetuned_checkpoints": "finetuned checkpoints, YAML list, e.g. \"['pi0_cube']\"",
    "alpha": "RETAIN merge weight 0..1",
    "device": "torch device (cpu, cuda)",
    "use_sim_time": "use /clock",
    "start_paused": "wait for ~/resume before commanding",
    "speed_scale": "fraction (0, 1] of the joint velocity and acceleration limits",
    "gripper_backend": "franka_gripper | topic (simulator) | none",
    "policy_backend": "local | openpi_server (the model runs on retain-serve / serve_policy)",
    "policy_server_uri": "the policy server's websocket address, e.g. ws://gpu-host:8000",
}


def _policy_node(context):
    overrides = {}
    for name in OPTIONAL:
        text = LaunchConfiguration(name).perform(context)
        if text != "":
            overrides[name] = launch_value(name, text)  # the declared type: alpha:=1 -> 1.0, device:=cuda -> 'cuda'
    return [Node(package="retain_ros", executable="policy_node", name="retain_policy", output="screen",
                 parameters=[LaunchConfiguration("params_file").perform(context), overrides])]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("retain_ros"), "config", "fr3_droid.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="policy node parameter file"),
        *(DeclareLaunchArgument(name, default_value="", description=f"{text} ('' = the params file's value)")
          for name, text in OPTIONAL.items()),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_policy_node)])
