"""The ROS-free planner core: LLM client, JSON extraction, action validation, prompts, the loop.

Never imports rclpy: the planner node (``sgclip_ros.nodes.planner_node``) only wires ROS topics,
services and actions to :class:`sgclip_ros.planner.core.Planner`.
"""
