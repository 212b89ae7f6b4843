"""A Hugging Face hub stand-in on 127.0.0.1 for `models pull` tests: HEAD and GET (with
Range, as a resumed download asks) of ORG/REPO/resolve/REV/FILE, the ETag being the
file's SHA-256 as the real hub gives for LFS files."""

from __future__ import annotations

import hashlib
import http.server
import threading
from typing import Any


class FakeHub:
    def __init__(self, files: dict[tuple[str, str], bytes], *, lie_about: set[str] | None = None) -> None:
        """``files``: (repo, file name) -> content; ``lie_about``: file names whose ETag is wrong."""
        self.files = files
        self.lie_about = lie_about or set()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _find(self) -> tuple[str, bytes] | None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    name = "/".join(parts[4:])
                    data = hub.files.get(("/".join(parts[:2]), name))
                    return None if data is None else (name, data)
                return None

            def _headers(self, name: str, data: bytes, length: int) -> None:
                sha = hashlib.sha256(data + (b"!" if name in hub.lie_about else b"")).hexdigest()
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")

            def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
                found = self._find()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self._headers(*found, len(found[1]))
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                found = self._find()
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                name, data = found
                ranged = self.headers.get("Range")
                start = int(ranged.split("=")[1].split("-")[0]) if ranged else 0
                self.send_response(206 if ranged else 200)
                self._headers(name, data, len(data) - start)
                self.end_headers()
                self.wfile.write(data[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
