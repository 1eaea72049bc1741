"""Running ``modeltrace serve`` as a real subprocess for end-to-end tests.

:class:`ServiceProcess` starts ``python -m modeltrace.cli serve`` on free
127.0.0.1 ports with a store in a temporary directory, waits for /readyz, and
offers what the tests need: URLs, ``kill -9``, SIGTERM, restart on the same
store, RSS from /proc, and the JSON log lines it wrote.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServiceProcess:
    """One ``modeltrace serve`` subprocess on free ports; restartable on the same store."""

    def __init__(
        self,
        workdir: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        grpc: bool = True,
        token: str | None = None,
        scheme: str = "http",
    ) -> None:
        self.workdir = workdir
        self.store = workdir / "store.db"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.with_grpc = grpc
        self.token = token
        self.scheme = scheme
        self.http_port = free_port()
        self.grpc_port = free_port() if grpc else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "service.log"
        self.starts = 0

    # -- addresses --------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        assert self.grpc_port is not None
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, headers=self.headers(), **kwargs)

    # -- lifecycle --------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "modeltrace.cli",
            "serve",
            "--store",
            str(self.store),
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--grpc",
            f"127.0.0.1:{self.grpc_port}" if self.grpc_port is not None else "off",
            "--checkpoint-interval",
            "2s",
            *self.extra_args,
        ]
        if self.token is not None:
            token_file = self.workdir / "token"
            token_file.write_text(self.token + "\n")
            cmd += ["--auth-token-file", str(token_file)]
        return cmd

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTRACE_SERVE_")}
        env.update(self.env)
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
            try:
                self.proc = subprocess.Popen(
                    self.command(), stdout=log, stderr=log, env=env, cwd=self.workdir
                )
            finally:
                log.close()
            self.starts += 1
            try:
                self.wait_ready(timeout)
                return self
            except RuntimeError:
                # A free port picked earlier may have been taken by another process
                # meanwhile (tests run in parallel): pick new ports and try again.
                if "address already in use" not in self.log_text()[log_start:].lower():
                    raise
                if attempt == 2:
                    raise
                self.http_port = free_port()
                self.grpc_port = free_port() if self.with_grpc else None
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        verify = self.scheme != "https"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
                )
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=1.0, verify=verify)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"service not ready in {timeout}s:\n{self.log_text()[-4000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> ServiceProcess:
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection ----------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def rss_kib(self) -> int:
        return rss_kib(self.pid)
