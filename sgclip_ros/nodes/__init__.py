"""Thin rclpy nodes wiring topics, parameters and threads to the ROS-free core."""
