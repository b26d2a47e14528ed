# Sourced by the build scripts: the ROS 2 distribution of the PyPI wheels and its folders.
# SGCLIP_DISTRO=kilted (default) or jazzy; each distribution has its own venv, build and install
# space, so both can be built side by side (`make test` and `make test ROS_DISTRO=jazzy`).
SGCLIP_DISTRO=${SGCLIP_DISTRO:-kilted}
case "$SGCLIP_DISTRO" in
  kilted)
    REQUIREMENTS=requirements/runtime.txt CONSTRAINTS=requirements/constraints.txt
    VENV=.venv BUILD_BASE=build INSTALL_BASE=install LOG_BASE=log ;;
  jazzy)
    REQUIREMENTS=requirements/jazzy.txt CONSTRAINTS=requirements/constraints-jazzy.txt
    VENV=.venv-jazzy BUILD_BASE=build-jazzy INSTALL_BASE=install-jazzy LOG_BASE=log-jazzy ;;
  *)
    echo "sgclip_ros: no PyPI wheels for ROS 2 '$SGCLIP_DISTRO' here (have: kilted, jazzy)." \
      "On a robot, build in a ROS 2 workspace instead: docs/install.md" >&2
    exit 2 ;;
esac
# The ros2 command-line and launch tools, built from ../shared/ros2-tools when there is no ros2.
ROS2_TOOLS=.ros2_tools/$SGCLIP_DISTRO
