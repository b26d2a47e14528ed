"""Command-line tools: the demo, the offline bag runner and helpers."""
