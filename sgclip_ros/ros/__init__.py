"""ROS-facing code: message converters (no running node needed) and node wiring."""
