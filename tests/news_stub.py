"""A local HTTP server that serves RSS and Atom documents written for the tests, honouring conditional GET."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler

from http_stub import ServedStub


@dataclass
class Document:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    delay: float = 0.0
    chunked: bool = False  # no Content-Length, so only the streamed byte count can catch an oversized body


@dataclass
class FeedServer(ServedStub):
    documents: dict[str, Document] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], int]] = field(default_factory=list)  # path, headers, status sent

    def __post_init__(self) -> None:
        self._serve()

    def url(self, path: str) -> str:
        return self.base_url + path

    def statuses(self, path: str) -> list[int]:
        return [status for p, _, status in self.requests if p == path]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                doc = server.documents.get(self.path)
                if doc is None:
                    return self._answer(404, b"not found", {})
                time.sleep(doc.delay)
                fresh = (doc.etag and self.headers.get("If-None-Match") == doc.etag) or (
                    doc.last_modified and self.headers.get("If-Modified-Since") == doc.last_modified
                )
                headers = {k: v for k, v in (("ETag", doc.etag), ("Last-Modified", doc.last_modified)) if v}
                if fresh:
                    return self._answer(304, b"", headers)
                self._answer(doc.status, doc.body, headers | {"Content-Type": doc.content_type}, doc.chunked)

            def _answer(self, status: int, body: bytes, headers: dict[str, str], chunked: bool = False) -> None:
                server.requests.append((self.path, dict(self.headers), status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 4096):
                        piece = body[start : start + 4096]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

        return Handler


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def rss(items: list[dict], title: str = "Test wire") -> bytes:
    """An RSS 2.0 document; each item dict may have title, link, guid, pubDate (a datetime or raw text), description."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{title}</title>']
    for item in items:
        parts.append("<item>")
        for key in ("title", "link", "guid", "description"):
            if key in item:
                parts.append(f"<{key}>{item[key]}</{key}>")
        if "pubDate" in item:
            value = item["pubDate"]
            parts.append(f"<pubDate>{http_date(value) if isinstance(value, datetime) else value}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


def atom(entries: list[dict], title: str = "Test atom") -> bytes:
    """An Atom 1.0 document; each entry dict may have title, link, id, published, updated (datetimes), summary."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>'
    ]
    for entry in entries:
        parts.append("<entry>")
        if "title" in entry:
            parts.append(f"<title>{entry['title']}</title>")
        if "link" in entry:
            parts.append(f'<link href="{entry["link"]}"/>')
        if "id" in entry:
            parts.append(f"<id>{entry['id']}</id>")
        for key in ("published", "updated"):
            if key in entry:
                parts.append(f"<{key}>{entry[key].isoformat().replace('+00:00', 'Z')}</{key}>")
        if "summary" in entry:
            parts.append(f"<summary>{entry['summary']}</summary>")
        parts.append("</entry>")
    parts.append("</feed>")
    return "\n".join(parts).encode()
