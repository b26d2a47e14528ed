"""Benchmarks: each takes --json PATH; ratios are against a baseline run in the same process."""


def report(result: dict, json_path: str | None, width: int = 24) -> None:
    """Print every figure, one a line, and write them all to ``json_path`` when given."""
    import json

    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:{width}s} {shown}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
