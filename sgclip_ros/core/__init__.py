"""The ROS-free SGClip core: model, predictor, window, tracker, scene graph. Never imports rclpy."""
