"""The ROS-free SGClip core: model, predictor, window, tracker, scene graph. No ROS imports."""
