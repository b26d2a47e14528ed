"""LLM caption converter against a scripted OpenAI-compatible server on 127.0.0.1 (real HTTP),
and the JSONL spec cache / CLI."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from training import caption_llm as L
from training import caption_specs as CS
from training import spec as S
from training.synth import generate_dataset

GOOD = {
    "video_id": "v1",
    "sequential descriptions": ["circle A left of square B", "circle A touches square B"],
    "time stamps": {
        "2": {"description": ["circle A touches square B"],
              "programmatic": ["name(A, circle)", "name(B, square)", "touching(A, B)"],
              "duration": "mid", "duration precise": "1/2",
              "video location": "late", "video location precise": "[1/2, 1]"},
        "1": {"decription": ["red circle A left of square B"],
              "programmatic": ["name(A, circle)", "color(A, red)", "name(B, square)",
                               "left_of(A, B)", "not(touching(A, B))", "near(A, B, C)",
                               "on(A, table)"],
              "duration": "short", "duration precise": "1/4",
              "video location": "early", "video location precise": "[0, 1/4]"},
    },
}
E1 = S.And(S.Category("A", "circle"), S.Unary("A", "red"), S.Category("B", "square"),
           S.Binary("A", "left of", "B"), S.Not(S.Binary("A", "touching", "B")))
E2 = S.And(S.Category("A", "circle"), S.Category("B", "square"), S.Binary("A", "touching", "B"))


def chat_body(content: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant",
                                                            "content": content}}]}).encode()


class ScriptedServer:
    """Answers each request with the next scripted (status, body, headers, delay_s, drip_s);
    the last entry repeats. drip_s > 0 sends the body one byte at a time, drip_s apart. Records
    every request it receives (a GET can only come from a followed redirect)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append({"method": "POST", "path": self.path,
                                        "headers": dict(self.headers),
                                        "json": json.loads(self.rfile.read(length))})
                self.answer()

            def do_GET(self):  # noqa: N802 (http.server API)
                server.requests.append({"method": "GET", "path": self.path,
                                        "headers": dict(self.headers)})
                self.answer()

            def answer(self):
                status, body, headers, delay, drip = server.next()
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for start in range(0, len(body), 1 if drip else max(1, len(body))):
                        self.wfile.write(body[start:start + (1 if drip else len(body))])
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def next(self):
        entry = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        status, body, *rest = entry
        headers = rest[0] if rest else {}
        delay = rest[1] if len(rest) > 1 else 0.0
        drip = rest[2] if len(rest) > 2 else 0.0
        return status, body, headers, delay, drip

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def config(server, **overrides):
    values = {"api_key_env": "SGCLIP_TEST_KEY", "timeout_s": 5.0, "max_retries": 3,
              "backoff_s": 0.01, "max_backoff_s": 0.05}
    values.update(overrides)
    return L.LLMConfig(server.base_url, "test-model", **values)


def test_good_reply(serve, monkeypatch):
    monkeypatch.setenv("SGCLIP_TEST_KEY", "sekret")
    server = serve((200, chat_body(json.dumps(GOOD))))
    result = L.LLMSpecConverter(config(server)).convert("a caption", video_id="v1")
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sekret"
    body = request["json"]
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert "time stamps" in system["content"] and "programmatic" in system["content"]
    assert "a caption" in user["content"] and '"v1"' in user["content"]
    assert [e.formula for e in result.events] == [E1, E2]
    first, second = (e.timing for e in result.events)
    assert (first.duration, first.location, first.location_range) == ("short", "early",
                                                                       (0.0, 0.25))
    assert (second.duration, second.duration_fraction, second.location_range) == (
        "medium", 0.5, (0.5, 1.0))
    assert len(result.warnings) == 2  # near(A, B, C) and on(A, table) were skipped
    (spec,) = result.specs
    assert spec.formula == S.Sequence(E1, E2) and spec.caption == "a caption"


def test_no_key_no_header(serve, monkeypatch):
    monkeypatch.delenv("SGCLIP_TEST_KEY", raising=False)
    server = serve((200, chat_body(json.dumps(GOOD))))
    L.LLMSpecConverter(config(server)).convert("c")
    assert "Authorization" not in server.requests[0]["headers"]


def test_fenced_reply_with_prose(serve):
    content = "Sure! Here it is:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nDone."
    server = serve((200, chat_body(content)))
    result = L.LLMSpecConverter(config(server)).convert("c")
    assert [e.formula for e in result.events] == [E1, E2]


@pytest.mark.parametrize("content", [
    "{not json at all",
    json.dumps({"video_id": "v"}),
    json.dumps({"time stamps": {"1": {"programmatic": ["hello world"]}}}),
    json.dumps({"time stamps": {"1": {"programmatic": "touching(A, B)"}}}),
])
def test_malformed_replies_raise_reply_errors(serve, content):
    server = serve((200, chat_body(content)))
    with pytest.raises(L.LLMReplyError):
        L.LLMSpecConverter(config(server)).convert("c")
    assert len(server.requests) == 1  # content problems are not retried


def test_429_then_success_backs_off(serve):
    server = serve((429, b'{"error": "slow down"}', {"Retry-After": "0"}),
                   (200, chat_body(json.dumps(GOOD))))
    sleeps = []
    result = L.LLMSpecConverter(config(server), sleep=sleeps.append).convert("c")
    assert len(server.requests) == 2 and len(result.events) == 2
    assert sleeps == [0.01]


def test_retry_after_is_honoured_up_to_the_cap(serve):
    server = serve((503, b"busy", {"Retry-After": "7"}), (200, chat_body(json.dumps(GOOD))))
    sleeps = []
    L.LLMSpecConverter(config(server, max_backoff_s=2.0), sleep=sleeps.append).convert("c")
    assert sleeps == [2.0]


def test_500s_exhaust_the_retries(serve):
    server = serve((500, b"boom"))
    sleeps = []
    with pytest.raises(L.LLMError, match="gave up after 3 attempts.*HTTP 500"):
        L.LLMSpecConverter(config(server, max_retries=2), sleep=sleeps.append).convert("c")
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]  # exponential


def test_client_errors_are_not_retried(serve):
    server = serve((401, b'{"error": "bad key"}'))
    with pytest.raises(L.LLMError, match="HTTP 401"):
        L.LLMSpecConverter(config(server)).convert("c")
    assert len(server.requests) == 1


def test_timeout_then_success(serve):
    server = serve((200, chat_body(json.dumps(GOOD)), {}, 1.0),
                   (200, chat_body(json.dumps(GOOD))))
    result = L.LLMSpecConverter(config(server, timeout_s=0.3), sleep=lambda s: None).convert("c")
    assert len(server.requests) == 2 and len(result.specs) == 1


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = L.LLMConfig(f"http://127.0.0.1:{port}", "m", max_retries=1, backoff_s=0.0)
    calls = []
    with pytest.raises(L.LLMError, match="cannot reach the LLM endpoint"):
        L.chat_completion(cfg, [{"role": "user", "content": "x"}], sleep=calls.append)
    assert calls == [0.0] and cfg.url.endswith(f"{port}/v1/chat/completions")


def test_response_size_is_capped(serve):
    server = serve((200, chat_body("x" * 5000)))
    with pytest.raises(L.LLMError, match="exceeds the 1000-byte cap"):
        L.LLMSpecConverter(config(server, max_response_bytes=1000)).convert("c")


# ----------------------------------------------------------------------------- transport safety
# The requests go through the planner's client (sgclip_ros.planner.llm_client.ChatClient).
USER = [{"role": "user", "content": "x"}]


def test_redirects_are_not_followed(serve):
    server = serve((302, b"moved", {"Location": "/v1/elsewhere"}), (200, chat_body("{}")))
    with pytest.raises(L.LLMError, match="HTTP 302"):
        L.chat_completion(config(server), USER)
    assert [(r["method"], r["path"]) for r in server.requests] == [
        ("POST", "/v1/chat/completions")]  # the Location was never requested


def test_the_deadline_covers_a_server_that_keeps_trickling(serve):
    # One byte every 20 ms never trips a per-read socket timeout of 0.3 s; the hard deadline
    # must end the request anyway.
    server = serve((200, chat_body("slow"), {}, 0.0, 0.02))
    with pytest.raises(L.LLMError, match=r"gave up after 1 attempts; last: no answer within 0.3 s"):
        L.chat_completion(config(server, timeout_s=0.3, max_retries=0), USER)
    assert len(server.requests) == 1


def test_a_server_that_sleeps_past_the_deadline_times_out(serve):
    server = serve((200, chat_body("late"), {}, 2.0))
    with pytest.raises(L.LLMError, match="no answer within 0.2 s"):
        L.chat_completion(config(server, timeout_s=0.2, max_retries=1), USER, sleep=lambda s: None)
    assert len(server.requests) == 2  # a timeout is retried once, then reported


def test_proxy_settings_are_ignored(serve, monkeypatch):
    proxy = serve((200, chat_body("via the proxy")))
    server = serve((200, chat_body("direct")))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.httpd.server_address[1]}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert L.chat_completion(config(server), USER) == "direct"
    assert proxy.requests == [] and len(server.requests) == 1


def test_the_key_is_redacted_from_error_messages(serve, monkeypatch):
    monkeypatch.setenv("SGCLIP_TEST_KEY", "sk-very-secret-123")
    server = serve((401, b'{"error": "invalid key sk-very-secret-123"}'))
    with pytest.raises(L.LLMError) as info:
        L.LLMSpecConverter(config(server)).convert("c")
    assert "HTTP 401" in str(info.value) and "sk-very-secret-123" not in str(info.value)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-very-secret-123"


def test_a_base_url_without_v1_gets_it_appended(serve):
    server = serve((200, chat_body("ok")))
    base = server.base_url.removesuffix("/v1")
    assert L.chat_completion(L.LLMConfig(base, "m", max_retries=0), USER) == "ok"
    assert server.requests[0]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("value", ["gsk_abc123", "hf_AbCdEf", "AIzaSyABC-def", "sk-live"])
def test_a_key_given_as_api_key_env_is_refused_unquoted(value, tmp_path, capsys):
    with pytest.raises(ValueError) as info:
        L.LLMConfig("http://127.0.0.1:9/v1", "m", api_key_env=value)
    assert value not in str(info.value)
    argv = ["--data", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--llm-base-url",
            "http://127.0.0.1:9/v1", "--llm-model", "m", "--llm-api-key-env", value]
    with pytest.raises(SystemExit) as exit_info:
        CS.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--llm-api-key-env" in err and value not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_events_list_form_actions_wrapper_synonyms_and_negation():
    reply = {"actions": {"0": {"video_id": "v", "events": [
        {"event_id": 2, "description": ["b"], "programmatic": ["Touch(?a, ?b)"],
         "duration": "long", "video_location": "middle", "video_location_precise": ["1/3", "1"]},
        {"event_id": 1, "description": ["a"], "programmatic": ["not left-of(A, B)", "big(A)",
                                                               "not(name(A, ball))",
                                                               "not_above(B, A)"]},
    ]}}}
    events, warnings = L.events_from_reply(reply, {"touch": "touching"})
    assert [e.formula for e in events] == [
        S.And(S.Not(S.Binary("A", "left of", "B")), S.Unary("A", "big"),
              S.Not(S.Binary("B", "above", "A"))),
        S.Binary("A", "touching", "B"),
    ]
    assert events[1].timing.location == "mid" and events[1].timing.duration == "long"
    assert events[1].timing.location_range == pytest.approx((1 / 3, 1.0))
    assert len(warnings) == 1 and "negated" in warnings[0]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('```\n{"a": 2}\n```', {"a": 2}),
    ('noise {"a": {"b": 3}} trailing', {"a": {"b": 3}}),
])
def test_extract_json(text, expected):
    assert L.extract_json(text) == expected


# ----------------------------------------------------------------------------- cache and CLI


def test_cache_hit_does_not_call_the_server(serve, tmp_path):
    server = serve((200, chat_body(json.dumps(GOOD))))
    cache = CS.SpecCache(tmp_path / "specs.jsonl")
    convert = CS.llm_converter(config(server))
    report = CS.build_specs(["c1", "c2", "c1"], cache, convert, "test-model", L.PROMPT_VERSION)
    assert (report.converted, len(server.requests)) == (2, 2)
    reopened = CS.SpecCache(tmp_path / "specs.jsonl")
    report = CS.build_specs(["c1", "c2"], reopened, convert, "test-model", L.PROMPT_VERSION)
    assert (report.cached, report.converted, len(server.requests)) == (2, 0, 2)
    report = CS.build_specs(["c1"], reopened, convert, "test-model", "other-prompt")
    assert (report.converted, len(server.requests)) == (1, 3)  # new prompt, new key
    specs = CS.load_specs(tmp_path / "specs.jsonl")
    assert specs["c1"][0].formula == S.Sequence(E1, E2)


def test_failures_are_cached_unreachable_are_not(serve, tmp_path):
    bad = serve((200, chat_body("not json")))
    down = serve((500, b"down"))
    cache = CS.SpecCache(tmp_path / "specs.jsonl")
    report = CS.build_specs(["c"], cache, CS.llm_converter(config(bad)), "m", "p")
    assert report.failed == 1 and "error" in json.loads(cache.path.read_text())
    report = CS.build_specs(["d"], cache, CS.llm_converter(config(down, max_retries=1)), "m", "p")
    assert report.unreachable == 1 and cache.get("d", "m", "p") is None
    assert CS.load_specs(cache.path) == {}


def test_cache_lines_are_validated(tmp_path):
    path = tmp_path / "specs.jsonl"
    entry = CS.CacheEntry("c", "m", "p", [S.TemporalSpec(S.Sequence(S.Unary("A", "red")))])
    line = entry.to_json()
    line["key"] = "0" * 64
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="key does not match"):
        CS.SpecCache(path)


def test_cli_with_llm_and_rules(serve, tmp_path, capsys):
    data = tmp_path / "data"
    generate_dataset(data, videos=3, seed=8, frames=6)
    server = serve((200, chat_body(json.dumps(GOOD))))
    out = tmp_path / "llm.jsonl"
    argv = ["--data", str(data), "--out", str(out), "--llm-base-url", server.base_url,
            "--llm-model", "test-model", "--llm-api-key-env", "SGCLIP_TEST_KEY"]
    assert CS.main(argv) == 0
    assert len(server.requests) == 3 and len(out.read_text().splitlines()) == 3
    assert CS.main(argv) == 0 and len(server.requests) == 3  # all cached
    assert "3 cached" in capsys.readouterr().out
    rules_out = tmp_path / "rules.jsonl"
    assert CS.main(["--data", str(data), "--out", str(rules_out), "--rules"]) == 0
    assert len(CS.load_specs(rules_out)) == 3
    with pytest.raises(SystemExit):
        CS.main(["--data", str(data), "--out", str(out), "--rules", "--llm-model", "m"])
    assert CS.main(["--data", str(tmp_path / "none"), "--out", str(out), "--rules"]) == 2
