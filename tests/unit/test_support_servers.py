"""The tests' server helpers clean up after a failing test.

A Prometheus, an Alertmanager or a serving thread left behind by a test that failed
keeps its port and, for the session's remaining modules, its CPU: on a small CI
machine that turns one failure into many. The helpers are context managers for that
reason, and these tests fail inside their ``with`` on purpose. A stand-in binary that
answers ``/-/ready`` plays the servers, so no Prometheus is needed here.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from tests.support.alertmanager import AlertmanagerServer, WebhookReceiver
from tests.support.http_server import BackgroundServer
from tests.support.promserver import PrometheusServer, http_ok

STAND_IN = """\
import http.server
import sys

address = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--web.listen-address="))
host, port = address.rsplit(":", 1)


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer((host, int(port)), Ready).serve_forever()
"""


class Boom(Exception):
    """What a failing test raises inside the ``with``."""


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """An executable that serves ``/-/ready`` where the real server would listen."""
    script = tmp_path / "server.py"
    script.write_text(STAND_IN)
    binary = tmp_path / "stand-in"
    binary.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))} "$@"\n'
    )
    binary.chmod(0o755)
    return binary


def refuses(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` any more."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def stopped(process: subprocess.Popen[bytes] | None) -> bool:
    return process is not None and process.poll() is not None


def test_a_failing_test_still_stops_its_prometheus(stand_in: Path, tmp_path: Path) -> None:
    with pytest.raises(Boom), PrometheusServer(stand_in, tmp_path / "prom", []) as prom:
        assert http_ok(f"{prom.url}/-/ready")
        process = prom.process
        raise Boom
    assert stopped(process)
    assert refuses(prom.port)


def test_a_prometheus_killed_and_restarted_in_the_with_is_stopped_on_exit(
    stand_in: Path, tmp_path: Path
) -> None:
    with PrometheusServer(stand_in, tmp_path / "prom", []) as prom:
        first = prom.process
        prom.kill()
        prom.start()
        second = prom.process
        assert second is not first and http_ok(f"{prom.url}/-/ready")
    assert stopped(first) and stopped(second)


def test_a_prometheus_that_never_gets_ready_fails_the_test_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    exits = tmp_path / "exits"
    exits.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 1\n")
    exits.chmod(0o755)
    server = PrometheusServer(exits, tmp_path / "prom", [])
    with pytest.raises(pytest.fail.Exception, match="cannot start"), server:
        pass
    assert stopped(server.process)


def test_a_failing_test_still_stops_its_alertmanager(stand_in: Path, tmp_path: Path) -> None:
    with pytest.raises(Boom), AlertmanagerServer(stand_in, tmp_path / "am") as alertmanager:
        assert http_ok(f"{alertmanager.url}/-/ready")
        process = alertmanager.process
        raise Boom
    assert stopped(process)
    assert refuses(alertmanager.port)


def test_a_failing_test_still_stops_its_webhook_receiver() -> None:
    with pytest.raises(Boom), WebhookReceiver() as hook:
        request = urllib.request.Request(hook.url, data=b'{"a": 1}', method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204
        assert hook.server is not None
        port, thread = int(hook.server.server_address[1]), hook.thread
        raise Boom
    assert hook.bodies == [{"a": 1}]
    assert thread is not None and not thread.is_alive()
    assert refuses(port)
    hook.stop()  # a second stop is harmless


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_failing_test_still_stops_its_background_server() -> None:
    with pytest.raises(Boom), BackgroundServer(Hello) as server:
        assert http_ok(server.url)
        raise Boom
    assert not server.thread.is_alive()
    assert refuses(server.port)
    server.stop()  # a second stop is harmless


def test_a_background_server_never_started_stops_without_waiting() -> None:
    """``shutdown`` waits for a serving loop that never ran: stop must not call it."""
    server = BackgroundServer(Hello)
    server.stop()
    assert refuses(server.port)
