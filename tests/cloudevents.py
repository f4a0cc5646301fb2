"""A CloudEvents receiver on this machine, as a payload logger's sink gets
the events (HTTP binary mode): every POST's headers (lower-cased), body and
arrival time. Used by the runtime, e2e and bench tiers' payload-log tests
(and, as a webhook, by the e2e monitoring tests' Alertmanager)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUEST_TYPE = "org.kubeflow.serving.inference.request"


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.times: list[float] = []  # time.monotonic() of each event's arrival
        lock, events, times = threading.Lock(), self.events, self.times

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    times.append(time.monotonic())
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests(self) -> list[dict[str, str]]:
        """The headers of the request events (one per payload record)."""
        return [h for h, _ in self.events if h.get("ce-type") == REQUEST_TYPE]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
