"""The test harness: real `cadre serve` processes on free ports in temp dirs, credentials made
with the `cadre` CLI, and a TCP proxy that can cut a connection mid-call.

CADRE_BIN names the binary (default: <repo>/target/debug/cadre)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[3]
CADRE_BIN = Path(os.environ.get("CADRE_BIN", REPO / "target" / "debug" / "cadre"))
#: Task types remote workers serve in these tests, one per test (routed to executor `remote`).
REMOTE = [f"intelligence.remote.sdk{i}" for i in range(8)]
T = TypeVar("T")

#: Routes REMOTE to executor `remote` with fast heartbeats, and gives its pool room for the
#: concurrency tests.
REMOTE_CONFIG = f"""
[executors.remote]
wait_for_worker_ms = 20000
heartbeat_interval_ms = 500
[supervisors.intelligence.pools]
research = 8
""" + "".join(
    f'[routes."{kind}"]\nsupervisor = "intelligence"\nworker = "research"\nexecutor = "remote"\n'
    for kind in [*REMOTE, "intelligence.remote.text"]
)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(what: str, check: Callable[[], T | None], timeout: float = 15.0, every: float = 0.05) -> T:
    """Polls `check` until it returns something other than None/False; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Node:
    """One `cadre serve` child process on a data dir; restartable on the same dir and gRPC port."""

    def __init__(self, root: Path, extra_config: str = "", grpc_port: int = 0) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config = root / "cadre.toml"
        self.config.write_text(
            f'[node]\ndata_dir = "{self.data_dir}"\n[log]\nlevel = "warn"\n{extra_config}\n'
        )
        self.grpc_port = grpc_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc = ""
        self.http = ""
        self.credential = ""
        self._log = open(root / "node.log", "ab")

    def start(self) -> Node:
        """Starts the process and waits until endpoints.json names it."""
        endpoints = self.data_dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(CADRE_BIN), "serve", "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
             "--http-addr", "127.0.0.1:0", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )
        proc = self.proc

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(f"cadre serve exited {proc.returncode}: {self.log_text()[-3000:]}")
            try:
                doc: dict[str, Any] = json.loads(endpoints.read_text())
            except (OSError, ValueError):
                return None
            return doc if doc.get("pid") == proc.pid else None

        doc = eventually("endpoints.json", ready, timeout=30)
        self.grpc, self.http = doc["grpc"], doc["http"]
        self.credential = (self.data_dir / "credentials").read_text().strip()
        return self

    def log_text(self) -> str:
        """What the node wrote so far."""
        return (self.root / "node.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the node vanishes without closing anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Kills the node and starts it again on the same data dir (and the pinned gRPC port)."""
        assert self.grpc_port, "pin the gRPC port to restart on the same endpoint"
        self.kill()
        eventually("the node back up", self._try_start, timeout=30, every=0.2)

    def _try_start(self) -> bool:
        try:
            self.start()
            return True
        except AssertionError as e:  # the port may still be held for a moment
            if "Address already in use" in str(e) or "in use" in str(e):
                return False
            raise

    def cli(self, *args: str) -> str:
        """Runs the `cadre` CLI against this node with its bootstrap (commander) credential."""
        out = subprocess.run(
            [str(CADRE_BIN), *args, "--endpoint", self.grpc, "--token", self.credential],
            capture_output=True, text=True, timeout=30,
        )
        if out.returncode != 0:
            raise AssertionError(f"cadre {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def token(self, tenant: str, role: str) -> str:
        """A JWT for `tenant` with `role`, made with `cadre token issue`."""
        return self.cli(
            "token", "issue", "--tenant", tenant, "--role", role, "--subject", f"{role}-{tenant}", "--ttl", "1h"
        ).strip()


def start_node(tmp: Path, extra_config: str = "", grpc_port: int = 0) -> Node:
    """A started node in `tmp`."""
    return Node(tmp, extra_config, grpc_port).start()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One node shared by the client tests (each test uses tenants of its own)."""
    assert CADRE_BIN.exists(), f"{CADRE_BIN} is missing: cargo build -p cadre (or set CADRE_BIN)"
    n = start_node(tmp_path_factory.mktemp("node"), REMOTE_CONFIG)
    yield n
    n.kill()


@pytest.fixture
def tenant() -> str:
    """A tenant no other test uses, so lists and watches see only this test's tasks."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Node]:
    """A node of this test alone, on a pinned gRPC port so that it can be restarted."""
    n = start_node(tmp_path, REMOTE_CONFIG, grpc_port=free_port())
    yield n
    n.kill()


class CuttingProxy:
    """A TCP proxy to `target_port`. Armed with `cut_next_call()`, it forwards the next call the
    client sends (the next chunk larger than a control frame), passes nothing back from then on, waits `hold` seconds (the node carries
    out the call) and then resets the client's connection: the client sees UNAVAILABLE for a
    call the node did carry out."""

    def __init__(self, target_port: int, hold: float = 1.5) -> None:
        self.target_port = target_port
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed = threading.Event()
        self.cuts = 0
        self.connections = 0
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next_call(self) -> None:
        """Arms the proxy for one cut."""
        self.armed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._socks += [client, upstream]
            cutting = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, cutting), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, cutting), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, cutting: threading.Event) -> None:
        """Client to node; performs the cut when armed."""
        try:
            while data := client.recv(65536):
                # A call is more than a control frame (PING, WINDOW_UPDATE and SETTINGS acks
                # are 9-17 bytes and may trail the previous call): those pass through.
                if self.armed.is_set() and len(data) >= 64:
                    self.armed.clear()
                    cutting.set()
                    upstream.sendall(data)
                    time.sleep(self.hold)
                    self.cuts += 1
                    # RST, not FIN: the client's call fails as the connection drops.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, cutting: threading.Event) -> None:
        """Node to client, dropping everything once a cut started."""
        try:
            while data := upstream.recv(65536):
                if not cutting.is_set():
                    client.sendall(data)
        except OSError:
            pass
        if not cutting.is_set():
            _close(client, upstream)

    def close(self) -> None:
        """Stops accepting and drops every connection."""
        self.listener.close()
        _close(*self._socks)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
