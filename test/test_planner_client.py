"""The LLM client over real loopback HTTP: retries, backoff, deadline, size cap, breaker."""

from __future__ import annotations

import time

import pytest
from planner_harness import Reply, ScriptedServer, chat, error, huge

from sgclip_ros.planner.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from sgclip_ros.planner.llm_client import (
    ChatClient,
    LLMConfig,
    LLMError,
    api_key_from_env,
    parse_endpoint,
    safe_url,
)

KEY = "sk-test-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi"}]


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.stop()


def _client(server, sleeps=None, key=KEY, breaker=None, **config) -> ChatClient:
    settings = dict(base_url=server.base_url, model="m", timeout_s=5.0, max_retries=2)
    settings.update(config)
    sleep = sleeps.append if sleeps is not None else time.sleep
    return ChatClient(LLMConfig(**settings), key, breaker or CircuitBreaker(3, 30.0), sleep=sleep)


def _fails(client, kind: str) -> LLMError:
    with pytest.raises(LLMError) as info:
        client.chat(MESSAGES)
    assert info.value.kind == kind, str(info.value)
    return info.value


def test_success_sends_model_messages_and_key_header(server):
    server.script = lambda stage, req: chat('{"action": "stop"}')
    client = _client(server, json_mode=True)
    assert client.chat(MESSAGES) == '{"action": "stop"}'
    seen = server.requests()[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "m" and seen.body["messages"] == MESSAGES
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(client)


def test_no_key_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("SGCLIP_NO_SUCH_KEY", raising=False)
    client = _client(server, key=api_key_from_env("SGCLIP_NO_SUCH_KEY"))
    client.chat(MESSAGES)
    assert "Authorization" not in server.requests()[0].headers


def test_connection_refused_is_retried_then_unreachable(server):
    server.stop()
    sleeps = []
    client = _client(server, sleeps, backoff_s=0.1)
    _fails(client, "unreachable")
    assert client.stats["attempts"] == 3 and len(sleeps) == 2
    assert 0.08 <= sleeps[0] <= 0.12 and 0.16 <= sleeps[1] <= 0.24  # exponential backoff


def test_429_is_retried_honouring_retry_after(server):
    server.script = lambda stage, req: error(429, "slow down", **{"Retry-After": "0.5"})
    sleeps = []
    _fails(_client(server, sleeps, backoff_s=0.01), "rate_limited")
    assert len(server.requests()) == 3 and sleeps == [0.5, 0.5]


def test_5xx_is_retried_and_a_later_success_is_returned(server):
    replies = iter([error(500), error(503), chat("fine")])
    server.script = lambda stage, req: next(replies)
    sleeps = []
    assert _client(server, sleeps, backoff_s=0.01).chat(MESSAGES) == "fine"
    assert len(server.requests()) == 3 and len(sleeps) == 2


def test_5xx_gives_server_error_after_retries(server):
    server.script = lambda stage, req: error(500, "boom")
    err = _fails(_client(server, [], backoff_s=0.01), "server_error")
    assert "500" in str(err) and len(server.requests()) == 3


def test_4xx_is_not_retried(server):
    server.script = lambda stage, req: error(401, "bad key")
    _fails(_client(server, []), "http_error")
    assert len(server.requests()) == 1


def test_retry_after_beyond_the_deadline_is_not_waited_for(server):
    server.script = lambda stage, req: error(429, **{"Retry-After": "60"})
    sleeps = []
    _fails(_client(server, sleeps, timeout_s=2.0), "rate_limited")
    assert sleeps == [] and len(server.requests()) == 1


def test_stall_times_out_within_the_budget(server):
    server.script = lambda stage, req: Reply(stall_s=30.0, body=b"{}")
    start = time.monotonic()
    _fails(_client(server, timeout_s=1.0), "timeout")
    assert time.monotonic() - start < 20.0  # far below the 30 s stall
    assert len(server.requests()) == 1  # a timeout uses the whole budget: no retry


def test_trickling_body_hits_the_hard_deadline(server):
    server.script = lambda stage, req: Reply(body=b"x" * 1000, trickle=True)
    start = time.monotonic()
    _fails(_client(server, timeout_s=1.0), "timeout")
    assert time.monotonic() - start < 20.0  # 1000 bytes at 5 per second would take 200 s


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_ten_megabyte_body_is_refused(server, chunked):
    server.script = lambda stage, req: huge(10 * 1024 * 1024, chunked=chunked)
    _fails(_client(server, max_response_bytes=65536), "too_large")


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>not json</html>"),
        Reply(body=b'{"choices": []}'),
        Reply(body=b'{"choices": [{"message": {"content": null}}]}'),
        Reply(body=b'{"choices": [{"mess', declared_length=500),
    ],
    ids=["html", "no-choices", "null-content", "truncated-body"],
)
def test_malformed_envelopes_are_bad_responses(server, reply):
    server.script = lambda stage, req: reply
    _fails(_client(server), "bad_response")


def test_content_as_text_parts_is_joined(server):
    import json

    doc = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"text": "b"}]}}]}
    server.script = lambda stage, req: Reply(body=json.dumps(doc).encode())
    assert _client(server).chat(MESSAGES) == "ab"


def test_error_bodies_echoing_the_key_are_redacted(server):
    server.script = lambda stage, req: error(401, f"invalid key {KEY}")
    err = _fails(_client(server), "http_error")
    assert KEY not in str(err) and "***" in str(err)


def test_breaker_opens_after_three_failed_calls_and_probes_for_recovery(server):
    clock = FakeClock()
    breaker = CircuitBreaker(3, 30.0, clock=clock)
    server.script = lambda stage, req: error(500)
    client = _client(server, [], breaker=breaker, max_retries=1, backoff_s=0.01)
    for _ in range(3):
        _fails(client, "server_error")
    assert breaker.state == OPEN and len(server.requests()) == 6
    _fails(client, "circuit_open")
    assert len(server.requests()) == 6  # refused without touching the endpoint
    clock.t += 31
    assert breaker.state == HALF_OPEN
    _fails(client, "server_error")  # the probe: one attempt, no retries
    assert len(server.requests()) == 7 and breaker.state == OPEN
    _fails(client, "circuit_open")
    server.script = lambda stage, req: chat("back")
    clock.t += 31
    assert client.chat(MESSAGES) == "back"
    assert breaker.state == CLOSED and breaker.consecutive_failures == 0


def test_breaker_counts_only_consecutive_failures():
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        assert breaker.acquire() == CLOSED
        breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN and breaker.acquire() is None


def test_only_one_probe_at_a_time():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    clock.t += 6
    assert breaker.acquire() == HALF_OPEN
    assert breaker.acquire() is None  # a second caller fails fast while the probe runs
    breaker.record_success()
    assert breaker.acquire() == CLOSED


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://host/v1", "localhost:8000", "http://user:pw@host/v1"]
)
def test_only_plain_http_urls_without_credentials(url):
    with pytest.raises(LLMError) as info:
        parse_endpoint(url)
    assert info.value.kind == "config" and "pw" not in str(info.value)


def test_endpoint_paths_and_safe_url():
    assert parse_endpoint("https://api.openai.com/v1").path == "/v1/chat/completions"
    assert parse_endpoint("http://localhost:11434/v1/").path == "/v1/chat/completions"
    assert safe_url("https://u:secret@h:8/v1?key=secret") == "https://h:8/v1"


@pytest.mark.parametrize(
    "name, ok",
    [("OPENAI_API_KEY", True), ("", True), ("_K2", True), ("sk-abc123", False), ("A B", False)],
)
def test_api_key_env_must_be_a_variable_name(name, ok):
    from sgclip_ros.planner.llm_client import valid_env_name

    assert valid_env_name(name) is ok
