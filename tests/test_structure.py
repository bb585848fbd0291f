"""The package's shape: layers checked by import-linter, types by mypy, short functions, a
small sweep session, and a public API pinned by a test."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "hpo_helpers"


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_over_80_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n})")
    assert not long, long


def test_sweep_session_stays_small_and_run_sweep_short() -> None:
    assert len((PACKAGE / "sweep" / "session.py").read_text().splitlines()) < 450
    tree = ast.parse((PACKAGE / "sweep" / "run.py").read_text())
    (run_sweep,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                    and n.name == "run_sweep"]
    assert run_sweep.end_lineno - run_sweep.lineno + 1 < 40


def test_readers_do_not_import_the_sweep_at_module_level() -> None:
    for name in ("results/inspection.py", "frontends/widgets.py", "study/status.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                # the hooks a front end implements are all it may take from the sweep
                parts = (node.module or "").split(".")
                assert "sweep" not in parts or parts[-1] == "events", (name, node.module)


def test_the_import_contract_holds() -> None:
    """Layers point down, readers never import the sweep or training, no loops (imports
    inside functions count): `.importlinter` states it."""
    res = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


def test_the_package_type_checks() -> None:
    res = subprocess.run([_tool("mypy"), "hpo_helpers"], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_status_imports_no_sweep_or_training_module() -> None:
    code = ("import sys; from hpo_helpers import study_status; "
            "print(sorted(m for m in sys.modules if m.startswith('hpo_helpers.')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    loaded = eval(res.stdout)  # a list of module names
    assert "hpo_helpers.study.status" in loaded
    assert not [m for m in loaded if m.split(".")[1] in ("sweep", "training")], loaded


def test_the_public_api_is_pinned() -> None:
    import hpo_helpers

    assert hpo_helpers.__all__ == sorted(hpo_helpers.__all__)
    assert hpo_helpers.__all__ == [
        "BackboneError", "BundleError", "CheckpointError", "ConfigError", "DataError",
        "DeviceError", "DurableStoreError", "FingerprintMismatchError", "HpoHelpersError",
        "ResumePanel",
        "StudyError", "StudyLockedError", "SweepEvents", "SweepFailedError", "SweepOutcome",
        "TrialOutOfMemoryError", "default_roots", "evaluate_study", "find_study_files",
        "inspect_all", "load_configs", "notebook_setup", "notebook_tracking", "predict",
        "project_tracking_uri", "run_local_hpo_sweep", "run_sweep", "selection_markdown",
        "setup_mlflow_cross_platform", "setup_mlflow_from_config", "start_dashboard",
        "study_status"]
    for name in hpo_helpers.__all__:
        assert getattr(hpo_helpers, name) is not None


def test_every_error_type_is_exported() -> None:
    import hpo_helpers
    from hpo_helpers.core import errors

    defined = {n for n, v in vars(errors).items()
               if isinstance(v, type) and issubclass(v, Exception)
               and v.__module__ == errors.__name__}
    assert defined <= set(hpo_helpers.__all__), defined - set(hpo_helpers.__all__)


def test_notebooks_use_only_the_public_api() -> None:
    import json

    import hpo_helpers

    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"]
                         if c["cell_type"] == "code")
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hpo_helpers"):
                assert node.module == "hpo_helpers", (nb.name, node.module)
                assert {a.name for a in node.names} <= set(hpo_helpers.__all__), nb.name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "hpo_helpers":
                assert node.attr in hpo_helpers.__all__, (nb.name, node.attr)
