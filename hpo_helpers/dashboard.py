"""optuna-dashboard for a study's storage, in a background process on 127.0.0.1.

``start_dashboard(storage)`` returns a :class:`Dashboard` with the URL (on Colab, the URL of
Colab's port proxy). The server reads the SQLite file through its own connection with a busy
timeout; the study is in WAL mode, so reading while a sweep writes fails neither side. A study
file on Google Drive is served from a fresh local copy (SQLite never opens a Drive file).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import HpoHelpersError
from .runtime import Runtime, detect
from .snapshot import BUSY_TIMEOUT_S

__all__ = ["Dashboard", "start_dashboard"]

logger = logging.getLogger(__name__)


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


def _storage_url(storage: Path | str) -> str:
    s = str(storage)
    return s if "://" in s else f"sqlite:///{Path(s).absolute()}"


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
    proc = subprocess.Popen([sys.executable, "-m", "hpo_helpers.dashboard", _storage_url(storage),
                             host, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    local = f"http://{host}:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
            raise HpoHelpersError(f"optuna-dashboard exited ({proc.returncode}): {err}")
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
    logger.info("optuna-dashboard for %s at %s", storage, url)
    return Dashboard(url, port, proc)


def _serve(url: str, host: str, port: int) -> None:
    import optuna
    import optuna_dashboard

    kwargs = {"engine_kwargs": {"connect_args": {"timeout": BUSY_TIMEOUT_S}}} \
        if url.startswith("sqlite") else {}
    optuna_dashboard.run_server(optuna.storages.RDBStorage(url, **kwargs), host=host, port=port)


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
