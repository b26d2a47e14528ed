"""Benchmarks: each takes --json PATH; ratios are against a baseline run in the same process."""
