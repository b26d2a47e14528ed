"""A scripted OpenAI-compatible chat server on loopback (real HTTP) for the planner tests.

The test sets ``server.script``: a callable ``(stage, request) -> Reply`` where stage is
"concepts" or "action" (told apart by the planner's system prompt). Replies can be normal chat
completions, HTTP errors, stalls, huge or truncated bodies. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    stall_s: float = 0.0  # wait this long (or until the server stops) before answering
    trickle: bool = False  # send headers, then one body byte every 0.2 s
    declared_length: int | None = None  # Content-Length to announce (for truncated bodies)
    chunked: bool = False


def chat(content: str) -> Reply:
    """A normal chat completion whose message content is ``content``."""
    doc = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    return Reply(body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})


def chat_json(obj) -> Reply:
    return chat(json.dumps(obj))


def error(status: int, text: str = "error", **headers) -> Reply:
    body = json.dumps({"error": {"message": text}}).encode()
    return Reply(status=status, body=body, headers={"Content-Type": "application/json", **headers})


def huge(n_bytes: int = 10 * 1024 * 1024, chunked: bool = False) -> Reply:
    return Reply(body=b"x" * n_bytes, chunked=chunked)


def stage_of(request: dict) -> str:
    system = request.get("messages", [{}])[0].get("content", "")
    return "concepts" if "concept lists" in system else "action"


def user_text(request: dict) -> str:
    """All text of the user message (string content or text parts)."""
    content = request["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")


@dataclass
class Seen:
    path: str
    headers: dict
    body: dict
    stage: str


class ScriptedServer:
    """ThreadingHTTPServer on 127.0.0.1 that can be stopped and restarted on the same port."""

    def __init__(self, script=None, port: int = 0):
        self.script = script or (lambda stage, request: chat_json({"action": "stop"}))
        self.seen: list[Seen] = []
        self._release = threading.Event()
        self._httpd = None
        self.port = port
        self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._release.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        """Close the listening socket: connections are refused until start()."""
        self._release.set()  # let stalled handlers finish
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def requests(self, stage: str | None = None) -> list[Seen]:
        return [s for s in list(self.seen) if stage is None or s.stage == stage]


def _handler(server: ScriptedServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            stage = stage_of(body) if body else "unknown"
            server.seen.append(Seen(self.path, dict(self.headers), body, stage))
            self._send(server.script(stage, body))

        def _send(self, reply: Reply) -> None:
            if reply.stall_s and server._release.wait(reply.stall_s):
                return  # server stopping: drop the connection
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, str(value))
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                length = reply.declared_length or len(reply.body)
                self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self._body(reply)
            except (OSError, BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (size cap, timeout): expected

        def _body(self, reply: Reply) -> None:
            if reply.trickle:
                for byte in reply.body:
                    if server._release.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                return
            if reply.chunked:
                step = 65536
                for i in range(0, len(reply.body), step):
                    part = reply.body[i : i + step]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.wfile.write(reply.body)

    return Handler


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
