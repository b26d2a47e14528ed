"""Start the whole SGClip stack: the perception node (and, with use_planner, the planner node).

    ros2 launch sgclip_ros sgclip.launch.py camera_topic:=/front/image_raw
    OPENAI_API_KEY=... ros2 launch sgclip_ros sgclip.launch.py use_planner:=true \
        planner_params_file:=/path/to/my_planner.yaml

Arguments: those of perception.launch.py (namespace, params_file, camera_topic, use_sim_time,
autostart, model_dir, backend, device, log_level), plus use_planner (default false) and
planner_params_file (parameters and the `actions` allow-list; defaults to the package's
config/planner.yaml). The planner shares the namespace, use_sim_time and log_level. Its API key
comes from the environment variable its `api_key_env` parameter names, never from an argument.
"""

import importlib.util
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue


def _perception_arguments(share: str) -> list:
    """perception.launch.py's own argument declarations (one source for both files)."""
    path = os.path.join(share, "launch", "perception.launch.py")
    spec = importlib.util.spec_from_file_location("sgclip_perception_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.launch_arguments(share)


def generate_launch_description():
    share = get_package_share_directory("sgclip_ros")
    perception_args = _perception_arguments(share)
    arguments = perception_args + [
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
        launch_arguments={a.name: LaunchConfiguration(a.name) for a in perception_args}.items(),
    )
    planner_params = LaunchConfiguration("planner_params_file")
    planner = LifecycleNode(
        package="sgclip_ros",
        executable="planner_node",
        name="sgclip_planner",
        namespace=LaunchConfiguration("namespace"),
        # The same file gives the parameters and, through actions_file, the allow-list.
        parameters=[
            planner_params,
            {
                "actions_file": planner_params,
                "use_sim_time": ParameterValue(
                    LaunchConfiguration("use_sim_time"), value_type=bool
                ),
            },
        ],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        output="screen",
        condition=IfCondition(LaunchConfiguration("use_planner")),
    )
    return LaunchDescription(arguments + [perception, planner])
