"""Offline tools around SGClip weights: checkpoint import and training utilities."""
