"""Start the whole SGClip stack: the perception node (and, with use_planner, the planner node).

    ros2 launch sgclip_ros sgclip.launch.py camera_topic:=/front/image_raw
    OPENAI_API_KEY=... ros2 launch sgclip_ros sgclip.launch.py use_planner:=true \
        planner_params_file:=/path/to/my_planner.yaml

Arguments: namespace, params_file, camera_topic, log_level (passed to perception.launch.py);
use_planner (default false), planner_params_file (parameters and the `actions` allow-list;
defaults to the package's config/planner.yaml). The planner's API key comes from the
environment variable its `api_key_env` parameter names, never from a launch argument.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

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
        DeclareLaunchArgument(
            "use_planner", default_value="false", description="Also start the planner node."
        ),
        DeclareLaunchArgument(
            "planner_params_file",
            default_value=os.path.join(share, "config", "planner.yaml"),
            description="Planner parameters YAML; also read for its `actions` allow-list.",
        ),
    ]
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "perception.launch.py")),
        launch_arguments={name: LaunchConfiguration(name) for name in FORWARDED}.items(),
    )
    planner_params = LaunchConfiguration("planner_params_file")
    planner = LifecycleNode(
        package="sgclip_ros",
        executable="planner_node",
        name="sgclip_planner",
        namespace=LaunchConfiguration("namespace"),
        # The same file gives the parameters and, through actions_file, the allow-list.
        parameters=[planner_params, {"actions_file": planner_params}],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        condition=IfCondition(LaunchConfiguration("use_planner")),
    )
    return LaunchDescription(arguments + [perception, planner])
