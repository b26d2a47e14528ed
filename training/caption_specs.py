"""Convert every caption of a dataset to temporal specs once, and cache them as JSONL.

    python -m training.caption_specs --data DIR --out specs.jsonl --rules
    python -m training.caption_specs --data DIR --out specs.jsonl \\
        --llm-base-url http://localhost:8000/v1 --llm-model gpt-4o [--llm-api-key-env NAME]

``--data`` is a VidOR-style folder or a JSONL manifest. Each cache line is::

    {"key": sha256([caption, model, prompt_version]), "caption": ..., "model": ...,
     "prompt_version": ..., "specs": [TemporalSpec JSON, ...], "warnings": [...]}

or the same with ``"error"`` instead of ``"specs"`` when the caption could not be converted
(a parse error or an unusable LLM reply), so a training run never asks again. Transport
failures (LLM unreachable) are not cached: rerun the command to fill them in. Lines already in
``--out`` are kept and their captions skipped; new lines are appended.

Exit codes: 0 every caption has specs; 1 some captions failed or could not be reached;
2 bad command line or dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.caption_llm import PROMPT_VERSION, LLMConfig, LLMError, LLMSpecConverter
from training.caption_rules import PARSER_VERSION, CaptionParseError, caption_to_specs
from training.data import AnnotationError, load_dataset
from training.spec import SpecError, TemporalSpec, specs_from_json, specs_to_json

RULES_MODEL = "rules"


def cache_key(caption: str, model: str, prompt_version: str) -> str:
    """Hex sha256 of the caption, the model and the prompt (or parser) version."""
    canonical = json.dumps([caption, model, prompt_version], ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass
class CacheEntry:
    caption: str
    model: str
    prompt_version: str
    specs: list[TemporalSpec] | None
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return cache_key(self.caption, self.model, self.prompt_version)

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"key": self.key, "caption": self.caption, "model": self.model,
                                "prompt_version": self.prompt_version,
                                "warnings": list(self.warnings)}
        if self.specs is not None:
            line["specs"] = specs_to_json(self.specs)
        else:
            line["error"] = self.error or "unknown error"
        return line


class SpecCache:
    """The JSONL cache: read on open, appended (and flushed) entry by entry."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, CacheEntry] = {}
        if self.path.exists():
            for number, line in enumerate(self.path.read_text("utf-8").splitlines(), start=1):
                if line.strip():
                    entry = _entry_from_json(line, f"{self.path}:{number}")
                    self.entries[entry.key] = entry

    def get(self, caption: str, model: str, prompt_version: str) -> CacheEntry | None:
        return self.entries.get(cache_key(caption, model, prompt_version))

    def put(self, entry: CacheEntry) -> None:
        self.entries[entry.key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry.to_json()) + "\n")

    def specs_by_caption(self) -> dict[str, list[TemporalSpec]]:
        """caption -> specs of every successful entry (later lines win)."""
        return {e.caption: e.specs for e in self.entries.values() if e.specs is not None}


def _entry_from_json(line: str, source: str) -> CacheEntry:
    try:
        data = json.loads(line)
        entry = CacheEntry(data["caption"], data["model"], data["prompt_version"],
                           specs_from_json(data["specs"], f"{source}.specs")
                           if "specs" in data else None,
                           data.get("error"), tuple(data.get("warnings", ())))
    except (json.JSONDecodeError, KeyError, TypeError, SpecError) as exc:
        raise ValueError(f"{source}: not a spec cache line: {exc}") from exc
    if data.get("key") != entry.key:
        raise ValueError(f"{source}: key does not match caption/model/prompt_version")
    return entry


def load_specs(path: str | Path) -> dict[str, list[TemporalSpec]]:
    """caption -> specs from a cache file (what the trainer reads)."""
    return SpecCache(path).specs_by_caption()


Converter = Callable[[str], tuple[list[TemporalSpec], list[str]]]


def rules_converter(caption: str) -> tuple[list[TemporalSpec], list[str]]:
    return caption_to_specs(caption), []


def llm_converter(config: LLMConfig) -> Converter:
    converter = LLMSpecConverter(config)

    def convert(caption: str) -> tuple[list[TemporalSpec], list[str]]:
        result = converter.convert(caption)
        return result.specs, result.warnings

    return convert


@dataclass
class BuildReport:
    cached: int = 0
    converted: int = 0
    failed: int = 0
    unreachable: int = 0


def build_specs(captions: Iterable[str], cache: SpecCache, convert: Converter, model: str,
                prompt_version: str) -> BuildReport:
    """Convert every caption not yet in ``cache``; conversion failures are cached as errors,
    transport failures (:class:`LLMError`) are counted and left for a later run."""
    report = BuildReport()
    for caption in dict.fromkeys(captions):
        if cache.get(caption, model, prompt_version) is not None:
            report.cached += 1
            continue
        try:
            specs, warnings = convert(caption)
        except LLMError as exc:
            report.unreachable += 1
            print(f"warning: {exc}", file=sys.stderr)
            continue
        except (CaptionParseError, SpecError, ValueError) as exc:
            cache.put(CacheEntry(caption, model, prompt_version, None, str(exc)))
            report.failed += 1
            continue
        cache.put(CacheEntry(caption, model, prompt_version, specs, None, tuple(warnings)))
        report.converted += 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="VidOR-style folder or JSONL manifest")
    parser.add_argument("--out", required=True, help="spec cache (JSONL), appended to")
    parser.add_argument("--rules", action="store_true", help="rule-based ShapesWorld parser")
    parser.add_argument("--llm-base-url", help="OpenAI-compatible base URL, e.g. http://h:8000/v1")
    parser.add_argument("--llm-model", help="model name sent to the API")
    parser.add_argument("--llm-api-key-env", default="OPENAI_API_KEY",
                        help="NAME of the environment variable holding the API key")
    parser.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--llm-retries", type=int, default=4, help="retries per caption")
    args = parser.parse_args(argv)
    use_llm = bool(args.llm_base_url or args.llm_model)
    if args.rules == use_llm or (use_llm and not (args.llm_base_url and args.llm_model)):
        parser.error("use either --rules or both --llm-base-url and --llm-model")
    config = None
    if use_llm:
        try:
            config = LLMConfig(args.llm_base_url, args.llm_model, args.llm_api_key_env,
                               args.llm_timeout, args.llm_retries)
        except ValueError as exc:  # the message never repeats the (possibly secret) value
            parser.error(f"--llm-api-key-env: {exc}")
    try:
        videos = load_dataset(args.data)
        cache = SpecCache(args.out)
    except (AnnotationError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config is not None:
        convert, model, version = llm_converter(config), args.llm_model, PROMPT_VERSION
    else:
        convert, model, version = rules_converter, RULES_MODEL, PARSER_VERSION
    report = build_specs((v.caption for v in videos if v.caption), cache, convert, model,
                         version)
    print(f"{args.out}: {report.converted} converted, {report.cached} cached, "
          f"{report.failed} failed, {report.unreachable} unreachable")
    return 0 if report.failed == 0 and report.unreachable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
