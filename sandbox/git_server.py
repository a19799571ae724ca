"""A Git smart-HTTP server for the sandbox's deployments repository.

Flux's GitRepository only accepts http(s) and ssh URLs (see its CRD), so the
sandbox serves its bare repositories over HTTP through ``git http-backend``
on 127.0.0.1. Reads need HTTP basic auth with a non-empty password, so a
GitRepository whose ``secretRef`` is missing or empty fails the way it would
against GitHub. Pushes go through the file path of the bare repository.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

REALM = "gitops-tui sandbox"


class _GitHandler(BaseHTTPRequestHandler):
    project_root: ClassVar[Path]
    server_version = "gitops-tui-sandbox-git/1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the sandbox logs elsewhere
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _authorised_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user or "git" if password else None

    def _serve(self) -> None:
        user = self._authorised_user()
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "PATH": "/usr/bin:/bin:/usr/local/bin",
        }
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False, timeout=60
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for raw in head.decode("latin-1").splitlines():
            name, _, value = raw.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if result.returncode != 0 and not headers:
            status = 500
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHttpServer:
    """Serves every bare repository under ``root`` at http://127.0.0.1:PORT/<name>.git."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("GitHandler", (_GitHandler,), {"project_root": root})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url_for(self, repository: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repository}"

    def start(self) -> GitHttpServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox-git-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(OSError):
            self._server.server_close()

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
