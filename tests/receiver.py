"""A real remote-write receiver for the compliance tests: an HTTP server on loopback that
decodes snappy + protobuf like Prometheus does, records every request, and answers with
scripted statuses."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import snappy

from openanomaly.adapters.metrics_writer.prompb import messages
from tests.scripted_server import serve


@dataclass
class Received:
    headers: dict[str, str]
    series: list[tuple[tuple[tuple[str, str], ...], list[tuple[int, float, int]]]]
    # (labels as sent, [(timestamp, value, value bits)])


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    attempts: int = 0  # every POST, accepted or not
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    """Answers for the next requests, in order: (status, headers, body); then 204 forever."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def samples(self) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float, int]]]:
        """Every accepted sample by series, in arrival order."""
        out: dict[tuple[tuple[str, str], ...], list[tuple[int, float, int]]] = {}
        for request in self.requests:
            for labels, samples in request.series:
                out.setdefault(labels, []).extend(samples)
        return out


@contextmanager
def remote_write_receiver() -> Iterator[Receiver]:
    state = Receiver()
    write_request = messages()["WriteRequest"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.attempts += 1
                status, headers, answer = state.script.pop(0) if state.script else (204, {}, b"")
            if 200 <= status < 300:
                request = write_request()
                request.ParseFromString(snappy.decompress(body))
                decoded = [
                    (
                        tuple((label.name, label.value) for label in ts.labels),
                        [
                            (
                                s.timestamp,
                                s.value,
                                struct.unpack("<Q", struct.pack("<d", s.value))[0],
                            )
                            for s in ts.samples
                        ],
                    )
                    for ts in request.timeseries
                ]
                with state.lock:
                    state.requests.append(Received(dict(self.headers.items()), decoded))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        state.url = url
        yield state
