"""optuna-dashboard for a study's storage, in a background process on 127.0.0.1.

``start_dashboard(storage)`` returns a :class:`Dashboard` with the URL (on Colab, the URL of
Colab's port proxy). The server reads the SQLite file read-only through its own connection with
a busy timeout; the study is in WAL mode, so reading while a sweep writes fails neither side. A
study file on Google Drive is served from a fresh local copy (SQLite never opens a Drive file).
The storage (a URL may hold a password) reaches the server process through its environment,
never its arguments: ``ps`` shows only host and port; logs show the URL masked.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import HpoHelpersError
from .redaction import mask
from .runtime import Runtime, detect, environ

__all__ = ["Dashboard", "start_dashboard"]

logger = logging.getLogger(__name__)

#: Environment variable that carries the storage to the server process (not its argv).
STORAGE_ENV = "HPO_DASHBOARD_STORAGE"


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
        from .snapshot import readable

        storage = readable(Path(storage))
    target = str(storage) if "://" in str(storage) else str(Path(storage).absolute())
    proc = subprocess.Popen([sys.executable, "-m", "hpo_helpers.dashboard", host, str(port)],
                            env={**os.environ, STORAGE_ENV: target}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    local = f"http://{host}:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
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


def _serve(host: str, port: int) -> None:
    import optuna_dashboard

    from .study import reader_storage

    target = environ().get(STORAGE_ENV)
    if not target:
        raise SystemExit(f"{STORAGE_ENV} is not set: start the server with start_dashboard()")
    try:
        storage = reader_storage(target)  # read-only: the dashboard never writes the study
    except HpoHelpersError as exc:
        raise SystemExit(f"error: {exc}") from None
    if storage is None:
        raise SystemExit(f"error: no study at {mask(target)} yet. Fix: run the sweep first.")
    optuna_dashboard.run_server(storage, host=host, port=port)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
