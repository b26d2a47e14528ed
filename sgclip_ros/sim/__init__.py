"""Synthetic scenes (ShapesWorld) rendered inside the installed package: demo camera and tests."""
