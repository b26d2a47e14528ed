"""Start the whole SGClip stack: the perception node (the planner joins when it lands).

    ros2 launch sgclip_ros sgclip.launch.py camera_topic:=/front/image_raw

Arguments: namespace, params_file, camera_topic, log_level (passed to perception.launch.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

FORWARDED = ("namespace", "params_file", "camera_topic", "log_level")


def generate_launch_description():
    share = get_package_share_directory("sgclip_ros")
    arguments = [
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "sgclip.yaml")
        ),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("log_level", default_value="info"),
    ]
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "perception.launch.py")),
        launch_arguments={name: LaunchConfiguration(name) for name in FORWARDED}.items(),
    )
    return LaunchDescription(arguments + [perception])
