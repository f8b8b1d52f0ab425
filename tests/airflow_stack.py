"""A real Airflow stack for tests: processes in a temporary AIRFLOW_HOME on loopback, each wait
bounded, all stopped (process group SIGTERM, then SIGKILL) at the end.  Used by
tests/test_airflow_live.py (LocalExecutor) and tests/test_airflow_celery.py (CeleryExecutor)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import ROOT

DAGS = ROOT / "dags"
USER, PASSWORD = "mediamon", secrets.token_urlsafe(12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_bin() -> str:
    exe = Path(sys.executable).parent / "airflow"
    return str(exe) if exe.exists() else (shutil.which("airflow") or "airflow")


class AirflowStack:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = int(env["AIRFLOW__API__PORT"])
        self.base = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        p = subprocess.run([airflow_bin(), *args], env=self.env, cwd=self.home, capture_output=True, text=True,
                           timeout=timeout)
        assert p.returncode == 0, f"airflow {' '.join(args)}: {p.stderr[-3000:]}"
        return p.stdout

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen([airflow_bin(), *args], env=self.env, cwd=self.home, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {p.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, n: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


def wait_for(what: str, fn, timeout: float, stack: AirflowStack, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            last = fn()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n"
                         + "\n".join(f"--- {n} ---\n{stack.tail(n)}" for n in stack.procs))


def airflow_env(home: Path, port: int, settings: dict[str, str]) -> dict[str, str]:
    """The environment of every Airflow process of a test stack: this process's environment without
    AIRFLOW*/MEDIAMON_* variables, then the api-server on loopback ``port``, the simple auth
    manager with USER/PASSWORD (written to ``home``), one JWT secret and one API secret key for
    every process, a fast dag-processor and scheduler, and ``settings`` (executor, database,
    MEDIAMON_* …) last."""
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MEDIAMON_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # one JWT secret and one API secret key for the api-server and every worker (issue 17, defect 4)
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "PYTHONPATH": str(ROOT),
    })
    env.update(settings)
    return env
