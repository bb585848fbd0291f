"""The simulated Colab and Kaggle VM images (issue 22 item 6): the one place that names what
they ship, and how a fresh VM is made from them.

Versions come from the runtimes' own published lists, read on 2026-12-07:

* Colab: ``googlecolab/backend-info`` ``pip-freeze.gpu.txt`` at a724079 (2026-08-19). Colab
  ships transformers, ipykernel 6.17.1 and ipywidgets 7.7.1 but NOT optuna, mlflow, seqeval,
  papermill or this package: the notebooks' set-up cell must install them.
* Kaggle: ``Kaggle/docker-python`` ``Dockerfile.tmpl`` and ``kaggle_requirements.txt`` at 78aaa43
  (2026-08-12): Colab's runtime image plus Kaggle's packages, among them ipywidgets 8.1.5,
  optuna and papermill (the last two unpinned there: we take the versions requirements.txt
  pins). No mlflow, no seqeval.

Not simulated: Python (Colab runs 3.13.15; the image runs this machine's Python), the torch
build (Colab's ``torch 2.11.0+cu128``; the CPU wheel ``torch==2.13.0`` stands in, as everywhere
on this machine) and setuptools (Colab's 75.2.0 is older than that torch accepts).

An image is a virtual environment built once and cached under ``.venv/vm-images/<name>-<hash>``
(rebuilt when a pin here changes; ``.ci/run`` starts from a fresh ``.venv``, so CI builds it
once per run). A *VM* is a new, empty virtual environment whose ``site-packages`` sees the
image through a ``.pth`` file: what the notebook's set-up cell installs lands in the VM, never in
the cached image, and a VM reset is a new VM.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / ".venv" / "vm-images"

COLAB_SOURCE = "googlecolab/backend-info pip-freeze.gpu.txt @ a724079 (2026-08-19)"
#: Colab's preinstalled packages that matter to this project (and the kernel under it).
COLAB: dict[str, str] = {
    "torch": "2.13.0",  # stands in for 2.11.0+cu128 (CPU wheel on this machine)
    "transformers": "5.15.0",
    "tokenizers": "0.22.2",
    "safetensors": "0.8.0",
    "huggingface_hub": "1.27.0",
    "ipykernel": "6.17.1",
    "ipython": "7.34.0",
    "ipywidgets": "7.7.1",
    "widgetsnbextension": "3.6.10",
    "jupyterlab_widgets": "3.0.16",
    "jupyter_client": "7.4.9",
    "traitlets": "5.7.1",
    "pyzmq": "26.2.1",
    "tornado": "6.5.7",
    "pandas": "2.2.3",
    "matplotlib": "3.10.0",
    "numpy": "2.1.3",
    "scipy": "1.16.3",
    "scikit-learn": "1.6.1",
    "pyarrow": "18.1.0",
    "SQLAlchemy": "2.0.52",
    "Flask": "3.1.3",
    "requests": "2.32.4",
    "tqdm": "4.67.3",
    "PyYAML": "6.0.3",
    "packaging": "26.3",
    "pip": "24.1.2",
    # setuptools: Colab has 75.2.0, which the torch==2.13.0 stand-in refuses (>=77.0.3):
    # left to torch's requirement
    "wheel": "0.48.0",
}
#: What Colab does not ship (checked on the built image).
NOT_IN_COLAB = ("optuna", "mlflow", "seqeval", "papermill", "hpo_helpers")

KAGGLE_SOURCE = ("Kaggle/docker-python Dockerfile.tmpl + kaggle_requirements.txt @ 78aaa43 "
                 "(2026-08-12)")
#: Kaggle's image: Colab's, plus these.
KAGGLE_EXTRA: dict[str, str] = {
    "ipywidgets": "8.1.5",
    "optuna": "5.0.0",  # unpinned in kaggle_requirements.txt
    "papermill": "2.7.0",  # unpinned in kaggle_requirements.txt
}
NOT_IN_KAGGLE = ("mlflow", "seqeval", "hpo_helpers")


def _pins(pins: dict[str, str]) -> list[str]:
    return [f"{name}=={version}" for name, version in pins.items()]


def _key(*parts: object) -> str:
    text = json.dumps([sys.version_info[:2], *parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _base_python() -> str:
    return getattr(sys, "_base_executable", sys.executable)


def _site(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"))}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _build(final: Path, build: callable) -> Path:  # type: ignore[valid-type]
    """Build an image into a temporary folder and rename it to ``final`` (cached)."""
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "IMAGE.json").is_file():
            return final
        tmp = final.with_name(final.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(tmp)], check=True)
        build(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final


def _pip(python: Path, *args: str) -> None:
    res = subprocess.run([str(python), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", *args], capture_output=True, text=True,
                         env=_env())
    if res.returncode:
        raise RuntimeError(f"building the VM image failed: pip {' '.join(args)}\n"
                           f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def colab_image() -> Path:
    """site-packages of the Colab image (built once, cached under .venv/vm-images)."""
    final = IMAGES / f"colab-{_key(COLAB)}"

    def build(tmp: Path) -> None:
        py = tmp / "bin" / "python"
        # pip itself: the project's pip bootstraps the image's own (Colab's version)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                        "--disable-pip-version-check", f"pip=={COLAB['pip']}"], check=True,
                       env=_env(), capture_output=True)
        _pip(py, f"torch=={COLAB['torch']}")
        _pip(py, *_pins({k: v for k, v in COLAB.items() if k not in ("torch", "pip")}),
             f"torch=={COLAB['torch']}")
        _check_absent(py, NOT_IN_COLAB)
        (tmp / "IMAGE.json").write_text(json.dumps({"source": COLAB_SOURCE, "pins": COLAB},
                                                   indent=1))

    return _site(_build(final, build))


def kaggle_image() -> list[Path]:
    """site-packages folders of the Kaggle image: Kaggle's layer first, then Colab's."""
    colab = colab_image()
    final = IMAGES / f"kaggle-{_key(COLAB, KAGGLE_EXTRA)}"

    def build(tmp: Path) -> None:
        (_site(tmp) / "_colab_image.pth").write_text(f"{colab}\n")
        py = tmp / "bin" / "python"
        _pip(py, *_pins(KAGGLE_EXTRA), f"torch=={COLAB['torch']}")
        _check_absent(py, NOT_IN_KAGGLE)
        (tmp / "IMAGE.json").write_text(json.dumps({"source": KAGGLE_SOURCE,
                                                    "pins": {**COLAB, **KAGGLE_EXTRA}}, indent=1))

    return [_site(_build(final, build)), colab]


def _check_absent(python: Path, names: tuple[str, ...]) -> None:
    code = ("import importlib.util, sys; found = [n for n in sys.argv[1:] if "
            "importlib.util.find_spec(n)]; print(','.join(found))")
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True,
                         env=_env(), cwd="/").stdout.strip()
    if out:
        raise RuntimeError(f"the VM image must not ship {out}")


def installed_version(python: Path, dist: str) -> str | None:
    """The version of ``dist`` that ``python`` imports (None when absent)."""
    code = ("import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: pass")
    out = subprocess.run([str(python), "-c", code, dist], capture_output=True, text=True,
                         env=_env(), cwd="/").stdout.strip()
    return out or None


def fresh_vm(folder: Path, layers: list[Path]) -> Path:
    """A new VM's python: an empty environment that sees the image (``layers``)."""
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(folder)], check=True)
    (_site(folder) / "_vm_image.pth").write_text("".join(f"{p}\n" for p in layers))
    return folder / "bin" / "python"


def kernelspec(jupyter_path: Path, python: Path, env: dict[str, str]) -> str:
    """Register the VM's python as the Jupyter kernel ``vm`` under ``jupyter_path``."""
    spec = jupyter_path / "kernels" / "vm"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "VM", "language": "python", "env": env}))
    return "vm"


def kernel_pids(python: Path) -> list[int]:
    """Process ids of kernels that run the VM's ``python`` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == str(python).encode() and b"ipykernel_launcher" in argv:
            pids.append(int(proc.name))
    return pids


def kill_kernel(python: Path) -> int:
    """SIGKILL the VM's kernel from outside, by its pid; returns the pid."""
    pids = kernel_pids(python)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


def wait_for(predicate: callable, timeout: float, what: str) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


FAKE_DRIVE = '''"""google.colab.drive for the simulated VM: mount() bind-mounts the test's Drive."""
import os
import subprocess
from pathlib import Path


def mount(mountpoint, force_remount=False):
    source = os.environ["VM_DRIVE_SOURCE"]
    Path(mountpoint).mkdir(parents=True, exist_ok=True)
    target = str(Path(mountpoint).absolute())
    with open("/proc/self/mountinfo") as fh:
        if any(line.split()[4] == target for line in fh):
            return
    subprocess.run(["mount", "--bind", source, mountpoint], check=True)
'''


def fake_colab(folder: Path) -> Path:
    """A ``google.colab`` package whose ``drive.mount`` bind-mounts a real folder."""
    pkg = folder / "google" / "colab"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "drive.py").write_text(FAKE_DRIVE)
    return folder


def can_bind_mount(tmp: Path) -> str | None:
    """None when this machine lets the tests bind-mount, else why not."""
    a, b = tmp / "bind-a", tmp / "bind-b"
    a.mkdir(exist_ok=True)
    b.mkdir(exist_ok=True)
    res = subprocess.run(["mount", "--bind", str(a), str(b)], capture_output=True, text=True)
    if res.returncode:
        return f"mount --bind refused here: {res.stderr.strip()[:200]}"
    subprocess.run(["umount", str(b)], check=False)
    return None


def is_mount(path: Path) -> bool:
    """Whether ``path`` is a mount point (``os.path.ismount`` misses a bind mount of a folder
    of the same file system)."""
    target = str(Path(path).absolute())
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh)


def unmount(path: Path) -> None:
    """Unmount ``path`` (every layer); raises when it stays mounted, so that nothing ever
    deletes through it."""
    while is_mount(path):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True)
