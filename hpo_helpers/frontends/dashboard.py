"""optuna-dashboard for a study's storage, in a background process on 127.0.0.1.

``start_dashboard(storage)`` returns a :class:`Dashboard` with the URL (on Colab, the URL of
Colab's port proxy). The server reads the SQLite file read-only through its own connection with
a busy timeout; the study is in WAL mode, so reading while a sweep writes fails neither side. A
study file on Google Drive is served from a fresh local copy (SQLite never opens a Drive file).
The storage (a URL may hold a password) reaches the server process through its environment,
never its arguments: ``ps`` shows only host and port; logs show the URL masked.

The dashboard is read-only for every storage (issue 23: on PostgreSQL anyone on the machine
could create or delete studies through it): the server wraps the storage in
:class:`~hpo_helpers.study.readonly.ReadOnlyStorage`, and any request other than GET or HEAD
is answered ``405`` with a JSON ``reason`` before optuna-dashboard sees it. The server ends
with the process that started it, however that one ends (a kernel, ``kill -TERM`` of the
``dashboard`` command, even SIGKILL): it watches its parent and exits when it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import HpoHelpersError
from ..core.redaction import mask
from ..core.runtime import Runtime, detect, environ

__all__ = ["Dashboard", "start_dashboard"]

logger = logging.getLogger(__name__)

#: Environment variable that carries the storage to the server process (not its argv).
STORAGE_ENV = "HPO_DASHBOARD_STORAGE"
#: The pid of the process that started the server: the server exits when it is gone.
PARENT_ENV = "HPO_DASHBOARD_PARENT"
#: HTTP methods the dashboard answers; every other one is refused (read-only).
READ_METHODS = ("GET", "HEAD")


@dataclass
class Dashboard:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_dashboard(storage: Path | str, *, host: str = "127.0.0.1", port: int | None = None,
                    runtime: Runtime | None = None, wait_s: float = 60) -> Dashboard:
    """Start optuna-dashboard for ``storage`` (a study.db path or URL) and wait until it answers."""
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise HpoHelpersError("optuna-dashboard is not installed. Fix: pip install "
                              "optuna-dashboard") from None
    port = port or _free_port(host)
    rt = runtime or detect()
    if "://" not in str(storage):  # the live file, or a fresh local copy of a Drive file
        from ..storage.snapshot import readable

        storage = readable(Path(storage))
    target = str(storage) if "://" in str(storage) else str(Path(storage).absolute())
    # Its errors go to a file, not a pipe nobody reads once it runs (a full pipe would block it).
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "hpo_helpers.frontends.dashboard", host,
                             str(port)],
                            env={**os.environ, STORAGE_ENV: target, PARENT_ENV: str(os.getpid())},
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    local = f"http://{host}:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errors.seek(0)
            err = errors.read().decode(errors="replace")[-500:]
            raise HpoHelpersError(f"optuna-dashboard exited ({proc.returncode}): "
                                  f"{mask(err.strip().splitlines()[-1] if err.strip() else '')}")
        try:
            with urllib.request.urlopen(f"{local}/api/studies", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise HpoHelpersError(f"optuna-dashboard did not answer on {local} in {wait_s:.0f} s")
    url = local
    if rt.is_colab:
        try:
            from google.colab.output import eval_js  # only on Colab

            url = eval_js(f"google.colab.kernel.proxyPort({port})")
        except Exception as exc:  # noqa: BLE001 - the local URL still works in the VM
            logger.warning("Colab port proxy unavailable (%s); dashboard at %s", exc, local)
    logger.info("optuna-dashboard for %s at %s", mask(storage), url)
    dash = Dashboard(url, port, proc)
    import atexit

    atexit.register(dash.stop)  # no server outlives its kernel (it reads that kernel's copy)
    return dash


def read_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI ``app`` that answers only GET and HEAD; any other method gets ``405`` and a JSON
    ``reason`` (optuna-dashboard shows it), before the request reaches the dashboard."""
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": "This dashboard is read-only: studies are changed by "
                                     "the sweep, never through the dashboard."}).encode()
        start_response("405 Method Not Allowed",
                       [("Content-Type", "application/json"), ("Allow", ", ".join(READ_METHODS)),
                        ("Content-Length", str(len(body)))])
        return [body]
    return guarded


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End this server once the process that started it is gone (re-parented): no dashboard
    outlives its command or kernel, even one killed with SIGKILL."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="dashboard-parent", daemon=True).start()


def _serve(host: str, port: int) -> None:
    import bottle
    import optuna_dashboard

    from ..study.readonly import ReadOnlyStorage
    from ..study.store import reader_storage

    env = environ()
    target = env.get(STORAGE_ENV)
    if not target:
        raise SystemExit(f"{STORAGE_ENV} is not set: start the server with start_dashboard()")
    if env.get(PARENT_ENV, "").isdigit():
        _exit_with_parent(int(env[PARENT_ENV]))
    try:
        storage = reader_storage(target)  # read-only: the dashboard never writes the study
    except HpoHelpersError as exc:
        raise SystemExit(f"error: {exc}") from None
    if storage is None:
        raise SystemExit(f"error: no study at {mask(target)} yet. Fix: run the sweep first.")
    app = read_only(optuna_dashboard.wsgi(ReadOnlyStorage(storage)))
    bottle.run(app=app, host=host, port=port, quiet=True)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
