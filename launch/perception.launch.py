"""Start the SGClip perception node.

    ros2 launch sgclip_ros perception.launch.py camera_topic:=/front/image_raw namespace:=robot1

Arguments (`ros2 launch sgclip_ros perception.launch.py --show-args` lists them):
  namespace     node namespace; relative topics (the default camera, scene_graph, ...) follow it
  params_file   parameters YAML (default: the package's config/sgclip.yaml)
  camera_topic  remaps the default camera topic `camera/image_raw` (relative: in the namespace;
                a topic ending in /compressed is read as CompressedImage)
  use_sim_time  true: stamps are checked against /clock (`ros2 bag play --clock`, simulators)
  autostart, model_dir, backend, device: override the params file ('' keeps the file's value)
  log_level     debug, info, warn, error or fatal
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import LifecycleNode

DEFAULT_CAMERA = "camera/image_raw"
# Launch arguments that override the params file when given (name -> parameter type).
OVERRIDES = {"autostart": bool, "model_dir": str, "backend": str, "device": str}


def _bool(name: str, text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return text.strip().lower() == "true"


def parameter_overrides(values: dict) -> dict:
    """The parameters the launch arguments set on top of the params file."""
    overrides = {"use_sim_time": _bool("use_sim_time", values["use_sim_time"])}
    for name, kind in OVERRIDES.items():
        text = values[name]
        if text != "":
            overrides[name] = _bool(name, text) if kind is bool else text
    return overrides


def _perception_node(context):
    values = context.launch_configurations
    return [
        LifecycleNode(
            package="sgclip_ros",
            executable="perception_node",
            name="sgclip_perception",
            namespace=values["namespace"],
            parameters=[values["params_file"], parameter_overrides(values)],
            remappings=[(DEFAULT_CAMERA, values["camera_topic"])],
            ros_arguments=["--log-level", values["log_level"]],
            output="screen",
        )
    ]


def launch_arguments(share: str) -> list:
    """The arguments of this file; sgclip.launch.py declares and forwards the same ones."""
    return [
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace."),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "sgclip.yaml"),
            description="Parameters YAML for the perception node.",
        ),
        DeclareLaunchArgument(
            "camera_topic",
            default_value=DEFAULT_CAMERA,
            description=f"Camera topic remapped onto the default camera {DEFAULT_CAMERA}.",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="Use /clock (bag replay, sim)."
        ),
        DeclareLaunchArgument(
            "autostart", default_value="", description="Configure and activate at start-up."
        ),
        DeclareLaunchArgument("model_dir", default_value="", description="Model folder."),
        DeclareLaunchArgument(
            "backend",
            default_value="",
            description="auto, tensorrt, onnxruntime, onnxruntime-int8, aoti or torch.",
        ),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda, cuda:N."),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level."),
    ]


def generate_launch_description():
    share = get_package_share_directory("sgclip_ros")
    return LaunchDescription(launch_arguments(share) + [OpaqueFunction(function=_perception_node)])
