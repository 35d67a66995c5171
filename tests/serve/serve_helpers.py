"""Helpers of the serve tests: a real ``mask2former serve`` process on a free loopback port, and a small HTTP client
for it (stdlib only)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running server: its base URL (``http://127.0.0.1:PORT``), the process, its log and its TMPDIR."""

    url: str
    process: subprocess.Popen
    log: Path
    tmpdir: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             *, chunked: bool = False, timeout: float = 120.0) -> Reply:
        """One request on a new connection. A server that answers before it has read the whole body (413) may close
        the connection while the body is still being sent; the answer is read all the same."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.putrequest(method, path)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if chunked:
                connection.putheader("Transfer-Encoding", "chunked")
            elif body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            try:
                if chunked and body is not None:
                    for start in range(0, len(body), 1 << 20):
                        piece = body[start : start + (1 << 20)]
                        connection.send(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")
                    connection.send(b"0\r\n\r\n")
                elif body is not None:
                    connection.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post_image(self, path: str, data: bytes, *, filename: str | None = None, **kwargs: Any) -> Reply:
        """POST ``data`` as the raw body, or as a multipart upload (field ``image``) when ``filename`` is given."""
        if filename is None:
            return self.call("POST", path, data, {"Content-Type": "application/octet-stream"}, **kwargs)
        body, content_type = multipart([("image", filename, data)])
        return self.call("POST", path, body, {"Content-Type": content_type}, **kwargs)


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of (field name, file name, content) files and plain fields; and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def start_server(folder: Path, *options: str, timeout: float = 180.0) -> Server:
    """Start ``mask2former serve --port 0`` (a free port, loopback) with its own TMPDIR under ``folder``."""
    tmpdir = folder / "tmp"
    tmpdir.mkdir(parents=True)
    log = folder / "server.log"
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "mask2former.cli", "serve", "--port", "0", "--device",
                                    "cpu", *options], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}:\n{log.read_text()}")
        found = re.search(r"web page: (http://127\.0\.0\.1:\d+)/", log.read_text())
        if found:
            server = Server(found.group(1), process, log, tmpdir)
            try:
                if server.call("GET", "/healthz", timeout=5).status == 200:
                    return server
            except OSError:
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start within {timeout} s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
