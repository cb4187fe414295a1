"""Plots and reports for people's browsers: `python -m alphapulse_assets.reports [--host H] [--port P]`.

The Dagster UI shows a markdown metadata value inline only when it is short (under 1,000 characters); a plot
embedded as base64 is far longer and hides behind "[Show Markdown]". So assets write their plots to the object store
under `plots/` and, when ALPHAPULSE_REPORTS_URL says where browsers reach them, put a short `![plot](URL)` in
their metadata, which the asset page renders without a click. Drift reports (`reports/`) are linked the same way: a
browser does not open a `file://` or `s3://` link from a web page.

This server is that URL for any object store (the local directory or the S3 bucket): read-only, GET and HEAD, the
`plots/` and `reports/` keys and nothing else (not models, manifests, snapshots or alerts). `make demo` starts it;
in production put it (or a CDN with the same paths) before the bucket and set ALPHAPULSE_REPORTS_URL to its address.
"""

from __future__ import annotations

import argparse
import mimetypes
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alphapulse_assets.storage.errors import StorageUnavailable
from alphapulse_assets.storage.object_store import BROWSABLE_PREFIXES, ObjectStore, browsable, object_store_from_url

DEFAULT_PORT = 3001


def handler_for(store: ObjectStore) -> type[BaseHTTPRequestHandler]:
    class ReportHandler(BaseHTTPRequestHandler):
        server_version = "alphapulse-reports"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            key = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            try:
                allowed = browsable(key)
            except ValueError:
                allowed = False
            if not allowed:
                self._error(HTTPStatus.NOT_FOUND, f"only {' and '.join(BROWSABLE_PREFIXES)} keys are served")
                return
            try:
                data = store.get_bytes(key)
            except FileNotFoundError:
                self._error(HTTPStatus.NOT_FOUND, f"no {key} in the object store")
                return
            except StorageUnavailable as exc:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(key)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            # A key is written once per model or hour (a retrain of the same hour rewrites it): a short cache only.
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _error(self, status: HTTPStatus, message: str) -> None:
            payload = message.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's signature)
            pass  # one line per image on every page view says nothing a person needs

    return ReportHandler


def serve(store: ObjectStore, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound and ready (call `serve_forever`)."""
    return ThreadingHTTPServer((host, port), handler_for(store))


def main(argv: list[str] | None = None) -> None:
    from alphapulse_assets.settings import ConfigError, Settings

    parser = argparse.ArgumentParser(prog="python -m alphapulse_assets.reports", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    server = serve(object_store_from_url(settings.object_store_location), args.host, args.port)
    print(f"serving plots/ and reports/ of {settings.object_store_location} on http://{args.host}:{args.port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
