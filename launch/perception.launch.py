"""Start the SGClip perception node.

    ros2 launch sgclip_ros perception.launch.py camera_topic:=/front/image_raw namespace:=robot1

Arguments: namespace, params_file (defaults to the package's config/sgclip.yaml), camera_topic
(remaps the default camera topic /camera/image_raw), log_level.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description():
    share = get_package_share_directory("sgclip_ros")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace."),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "sgclip.yaml"),
            description="Parameters YAML for the perception node.",
        ),
        DeclareLaunchArgument(
            "camera_topic",
            default_value="/camera/image_raw",
            description="Camera topic remapped onto the default camera /camera/image_raw.",
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level."),
    ]
    perception = LifecycleNode(
        package="sgclip_ros",
        executable="perception_node",
        name="sgclip_perception",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[("/camera/image_raw", LaunchConfiguration("camera_topic"))],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    return LaunchDescription(arguments + [perception])
