"""Hostile input (issue 11): secrets, hostile paths, oversized or deeply nested data, readers
racing a sweep. Each case ends in a one-line error or a clean recovery, writes nothing outside
the output folder, and leaves no secret anywhere."""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from hpo_helpers.core.redaction import MaskingFilter, mask, register_secret, register_url_secret

from .conftest import PYTHON, REPO, TINY_HPO, compact_dataset
from .test_distributed import PASSWORD, pg_url  # noqa: F401 - a fixture used below
from .test_kill_resume import _env

# ---------------------------------------------------------------------------------------------
# Secrets: one masking function, a table of shapes (finding 3)

SECRET_SHAPES = [
    ("postgresql+psycopg://bob:pa/ss@db:5432/x", "pa/ss"),
    ("postgresql+psycopg://bob:p:a/s:s@127.0.0.1:5432/x", "p:a/s:s"),
    ("postgresql://bob:p@ss@db/x", "p@ss"),
    ("postgresql://bob:p?ss#w@db/x", "p?ss#w"),
    ("postgresql://bob:p%40s%2Fs@db/x", "p%40s%2Fs"),
    ("postgresql://:onlypw@db/x", "onlypw"),
    ("mysql+pymysql://u:!$&*()+,;=~@db/x", "!$&*()+,;=~"),
    ("storage is 'postgresql+psycopg://bob:pa/ss@db/x' now", "pa/ss"),
    ("client_secret='x9y8z7'", "x9y8z7"),
    ('client_secret="x9y8z7"', "x9y8z7"),
    ('{"client_secret": "x9y8z7"}', "x9y8z7"),
    ("{'password': 'hunter22'}", "hunter22"),
    ('{"password": "hun\\"ter22"}', 'hun\\"ter22'),
    ("client_secret: x9y8z7", "x9y8z7"),
    ("Authorization: Bearer eyJhbGciOi.abc-def_ghi", "eyJhbGciOi.abc-def_ghi"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("https://h/api?password=hunter22&x=1", "hunter22"),
    ("https://h/api?x=1&access_token=tok123abc", "tok123abc"),
    ("https://acct.blob.core.windows.net/c?sv=1&sig=abc%2Fdef&se=2", "abc%2Fdef"),
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy/+==;X=y", "Zm9vYmFy/+=="),
    ("MLFLOW_TRACKING_PASSWORD=s3cr3t!", "s3cr3t!"),
    ("api_key: sk-123456", "sk-123456"),
    ("x-api-key=sk-123456", "sk-123456"),
    ("python -m x --password hunter22 --port 1", "hunter22"),
    ("python -m x --client-secret=hunter22", "hunter22"),
]

NOT_SECRETS = [
    "sqlite:////tmp/a.db",
    "Interrupted by SIGINT: state saved. To resume, run the same command or cell again",
    "Backbone tiny: random DistilBERT, WordPiece vocab 1580 (/x/.backbones)",
    "config.yaml: key 'checkpoint.storage_path' = 'x' must name a .db file",
    "http://127.0.0.1:8080/api/studies",
    "mail bob@example.com",
    "postgresql+psycopg://bob@db:5432/x",
]


@pytest.mark.parametrize("text,secret", SECRET_SHAPES)
def test_every_secret_shape_is_masked(text: str, secret: str) -> None:
    masked = mask(text)
    assert secret not in masked
    assert "***" in masked


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask(text) == text


def test_a_registered_password_is_masked_in_every_spelling() -> None:
    pw = "sp ace'q\"uo/te:" + uuid.uuid4().hex[:6]
    register_url_secret(
        "postgresql+psycopg://bob:" + __import__("urllib.parse").parse.quote(pw, safe="")
        + "@db/x")
    for text in (f"error: auth failed for {pw}", json.dumps({"x": pw}), repr(pw),
                 __import__("urllib.parse").parse.quote(pw, safe="")):
        assert pw not in mask(text) and "***" in mask(text), text
    register_secret("ab")  # too short to mask ordinary text: ignored
    assert mask("a cab") == "a cab"


def test_log_records_are_masked_with_their_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    log = logging.getLogger("hostile.mask")
    log.addHandler(handler)
    try:
        log.warning("opening %s", "postgresql://u:pa/ss@h/d")
        try:
            raise RuntimeError("client_secret='x9y8z7'")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "pa/ss" not in out and "x9y8z7" not in out
    assert "postgresql://u:***@h/d" in out and "RuntimeError" in out


def test_storage_type_param_names_the_database_kind() -> None:
    from hpo_helpers.tracking.tracker import _storage_type

    assert _storage_type("postgresql+psycopg://u:***@h/d") == "postgresql"
    assert _storage_type("/x/study.db") == "sqlite"
    assert _storage_type(None) == "None"


# ---------------------------------------------------------------------------------------------
# One-line errors (finding 11)


def _cli(project, *args: str, env: dict | None = None, timeout: int = 300):
    return subprocess.run(project.cli(*args), capture_output=True, text=True,
                           env=env or _env(), timeout=timeout, cwd=project.root)


def _one_line_error(res: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert re.search(pattern, errors[0]), errors[0]


def _deep_json(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def _deep_jsonl(path: Path) -> Path:
    path.write_text('{"content": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return path


@pytest.mark.parametrize("maker,pattern", [
    (_deep_json, r"deep\.json: JSON nested too deeply"),
    (_deep_jsonl, r"deep\.jsonl:1: JSON nested too deeply"),
])
def test_deeply_nested_json_is_one_line(project, maker, pattern) -> None:
    data = maker(project.root / ("deep.json" if maker is _deep_json else "deep.jsonl"))
    res = _cli(project, *project.run_args("--dataset", str(data))[3:])
    _one_line_error(res, pattern)


def test_output_folder_that_is_a_file_is_one_line(project) -> None:
    blocker = project.root / "iam-a-file"
    blocker.write_text("x")
    res = _cli(project, "run", "--config", str(project.hpo), "--output-dir", str(blocker))
    _one_line_error(res, r"iam-a-file' is a file, not a folder")
    assert blocker.read_text() == "x"


def test_output_folder_under_a_file_is_one_line(project) -> None:
    blocker = project.root / "iam-a-file"
    blocker.write_text("x")
    res = _cli(project, "run", "--config", str(project.hpo), "--output-dir",
               str(blocker / "sub"))
    _one_line_error(res, r"is not writable \(Not a directory\)")


def test_read_only_output_folder_is_one_line(project) -> None:
    ro = project.root / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only bind mount here (root ignores chmod)")
    try:
        res = _cli(project, "run", "--config", str(project.hpo), "--output-dir", str(ro))
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    _one_line_error(res, r"is not writable \(Read-only file system\)")


def test_non_utf8_output_path_is_one_line(project) -> None:
    env = _env()
    bad = os.fsencode(str(project.root)) + b"/out-\xff\xfe"
    cmd = [os.fsencode(c) for c in project.cli("run", "--config", str(project.hpo),
                                               "--output-dir")] + [bad]
    res = subprocess.run(cmd, capture_output=True, env=env, timeout=300, cwd=project.root)
    res = subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(),
                                      res.stderr.decode(errors="replace"))
    _one_line_error(res, r"is not valid UTF-8")
    assert not os.path.exists(bad)


@pytest.mark.parametrize("command", ["status", "dashboard"])
def test_closed_database_port_is_one_line(project, command) -> None:
    url = "postgresql+psycopg://u:pa/ss@127.0.0.1:1/x"
    res = _cli(project, command, "--config", str(project.hpo), "--storage-url", url)
    _one_line_error(res, r"cannot read the study database postgresql\+psycopg://u:\*\*\*@"
                         r"127\.0\.0\.1:1/x: .*Connection refused")
    assert "pa/ss" not in res.stdout + res.stderr


def test_dashboard_on_a_missing_database_is_one_line(project) -> None:
    res = _cli(project, "dashboard", "--config", str(project.hpo), "--output-dir",
               str(project.root / "nothing-here"))
    _one_line_error(res, r"no study hpo_tiny at .*nothing-here")
    assert not (project.root / "nothing-here" / "tiny").exists()  # a reader creates nothing


def test_damaged_database_is_one_line_for_status(project) -> None:
    db = project.output_dir / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    res = _cli(project, "status", "--config", str(project.hpo), "--output-dir",
               str(project.output_dir))
    _one_line_error(res, r"cannot read the study database .*study\.db")


def test_empty_storage_url_is_refused_not_a_quiet_local_study(project) -> None:
    res = _cli(project, "run", "--config", str(project.hpo), "--output-dir",
               str(project.output_dir), "--storage-url", "")
    _one_line_error(res, r"--storage-url is empty \(is HPO_STORAGE_URL set")
    assert not project.output_dir.exists()


# ---------------------------------------------------------------------------------------------
# Size guard (finding 13)


def _data_cfg(tmp_path: Path, **extra):
    from hpo_helpers.settings.config import load_data_config

    raw = yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())
    raw.update(extra)
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(raw))
    return load_data_config(f)


def test_oversized_documents_are_dropped_and_counted(tmp_path, caplog) -> None:
    from hpo_helpers.data.dataset import read_file

    cfg = _data_cfg(tmp_path, max_document_chars=50)
    f = tmp_path / "train.json"
    f.write_text(json.dumps([{"text": "John Smith", "annotations": [[0, 10, "Name"]]},
                             {"text": "x " * 100, "annotations": []}]))
    with caplog.at_level(logging.WARNING):
        docs, report = read_file(f, cfg)
    assert [d.words for d in docs] == [("John", "Smith")]
    assert report.oversized == 1
    assert "dropped documents over max_document_chars 1" in caplog.text


@pytest.mark.parametrize("name,content", [
    ("a.json", json.dumps([{"text": "x " * 100, "annotations": []}])),
    ("a.jsonl", json.dumps({"content": "x " * 100, "annotation": []}) + "\n"),
    ("a.conll", "".join(f"w{i} O\n" for i in range(40))),
])
def test_a_file_with_nothing_left_is_an_error(tmp_path, name, content) -> None:
    from hpo_helpers.core.errors import DataError
    from hpo_helpers.data.dataset import read_file

    cfg = _data_cfg(tmp_path, max_document_chars=50)
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError, match=r"all 1 documents are longer than max_document_chars "
                                        r"= 50 characters.*Fix: raise max_document_chars"):
        read_file(f, cfg)


def test_default_limit_keeps_old_fingerprints_and_a_new_limit_changes_it(tmp_path) -> None:
    from hpo_helpers.data.dataset import load_dataset

    base = load_dataset(REPO / "dataset", _data_cfg(tmp_path))
    same = load_dataset(REPO / "dataset", _data_cfg(tmp_path, max_document_chars=200_000))
    other = load_dataset(REPO / "dataset", _data_cfg(tmp_path, max_document_chars=100_000))
    assert base.fingerprint == same.fingerprint != other.fingerprint


@pytest.mark.slow
def test_a_50mb_single_line_document_is_dropped_cheaply(tmp_path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    small = [{"text": "John Smith lives in Paris", "annotations": [[0, 10, "Name"]]}] * 8
    huge = {"text": "lorem ipsum " * (50_000_000 // 12), "annotations": []}
    with open(folder / "train.json", "w") as fh:
        json.dump([*small, huge], fh)
    (folder / "validation.json").write_text(json.dumps(small[:2]))
    (folder / "test.json").write_text(json.dumps(small[:2]))
    code = textwrap.dedent(f"""
        import json, time, yaml
        from hpo_helpers.settings.config import load_data_config
        from hpo_helpers.data.dataset import load_dataset
        t = time.monotonic()
        cfg = load_data_config({str(REPO / 'config/data/demo.yaml')!r})
        ds = load_dataset({str(folder)!r}, cfg)
        big = sum(r.oversized for r in ds.reports)
        print(json.dumps({{"train": len(ds.train), "oversized": big,
                          "s": time.monotonic() - t,
                          # VmHWM: this process's own peak (ru_maxrss keeps the forking
                          # parent's, a pytest process that may hold a GB already)
                          "rss_mb": int(next(line.split()[1] for line in
                                             open("/proc/self/status")
                                             if line.startswith("VmHWM"))) / 1024}}))
    """)
    res = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=_env(),
                         timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["oversized"] == 1 and got["train"] == 8
    assert got["rss_mb"] < 1000, got  # was 4.6 GB and minutes of work


# ---------------------------------------------------------------------------------------------
# Hostile output folders: ?, # and % (finding 5)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["q?mode=ro", "h#frag", "p%41%2Fx", "s p;a'c\"e"])
def test_database_checks_open_the_named_file(tmp_path, name) -> None:
    from hpo_helpers.storage.snapshot import check_database, enable_wal

    folder = tmp_path / name
    folder.mkdir()
    db = folder / "study.db"
    enable_wal(db)
    assert check_database(db) is None
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    assert check_database(db) is not None  # the damaged file, not some other one
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.slow
def test_a_sweep_in_a_folder_named_like_a_uri_stays_inside_it(project) -> None:
    from hpo_helpers import load_configs, run_sweep, study_status

    project.write_hpo(max_trials=1)
    out = project.root / "x" / "q?mode=ro#frag%41"
    before = _files(project.root)
    cfg = load_configs(project.config_dir, project.hpo)
    outcome = run_sweep(cfg, output_dir=out)
    assert outcome.checkpoint_path == str(out / "tiny" / "study.db")
    assert (out / "tiny" / "study.db").is_file()
    assert (out / "tiny" / "study.db.lock").is_file()
    new = {p for p in _files(project.root) - before if out not in (p, *p.parents)}
    assert new == {project.root / "x"}, new
    assert study_status(cfg, output_dir=out)["n_complete"] == 1


# ---------------------------------------------------------------------------------------------
# Tokenizer cache (finding 9)


def test_a_second_process_never_replaces_the_tokenizer_cache(tmp_path, monkeypatch) -> None:
    """Two processes train at the same time; the loser uses the winner's file and leaves it."""
    import tokenizers

    from hpo_helpers.training.backbones import _tiny_tokenizer

    cache = tmp_path / "cache"
    first_texts = ["alpha beta gamma delta"] * 20
    second_texts = ["omega psi chi phi upsilon"] * 20
    original = tokenizers.Tokenizer.train_from_iterator
    calls = []

    def train(self, iterator, trainer=None, **kw):
        calls.append(1)
        original(self, iterator, trainer, **kw)
        if len(calls) == 1:  # while "we" trained, the running sweep wrote its cache
            _tiny_tokenizer(first_texts, cache)

    monkeypatch.setattr(tokenizers.Tokenizer, "train_from_iterator", train)
    ours = _tiny_tokenizer(second_texts, cache)
    on_disk = json.loads((cache / "tokenizer.json").read_text())["model"]["vocab"]
    assert "alpha" in on_disk and "omega" not in on_disk
    assert ours.get_vocab() == on_disk
    assert sorted(p.name for p in cache.iterdir()) == ["tokenizer.json"]


@pytest.mark.slow
def test_a_refused_run_leaves_the_running_sweeps_cache_alone(project) -> None:
    from hpo_helpers.study.store import StudyLock

    run = _cli(project, *project.run_args("--max-trials", "1")[3:])
    assert run.returncode == 0, run.stderr
    cache = next((project.output_dir / ".backbones").rglob("tokenizer.json"))
    before = (cache.read_bytes(), cache.stat().st_ino)
    lock = StudyLock(project.output_dir / "tiny" / "study.db")
    try:
        res = _cli(project, *project.run_args("--max-trials", "2")[3:])
    finally:
        lock.close()
    _one_line_error(res, "another sweep is already running this study")
    assert (cache.read_bytes(), cache.stat().st_ino) == before


# ---------------------------------------------------------------------------------------------
# Readers at study creation (finding 4)

_READER = textwrap.dedent("""
    import json, os, sys, time
    import optuna
    from hpo_helpers.study.store import reader_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    db, stop, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    errors, calls = [], 0
    while not os.path.exists(stop):
        calls += 1
        try:
            if mode == "status":
                storage = reader_storage(db)
                if storage is not None and "s" in optuna.get_all_study_names(storage):
                    optuna.load_study(study_name="s", storage=storage).get_trials()
                elif os.path.exists(db) and storage is None:
                    pass  # a file without a finished schema: "no study yet"
            else:  # what a user types: a writable storage that creates missing tables
                if os.path.exists(db):
                    try:
                        optuna.load_study(study_name="s", storage="sqlite:///" + db)
                    except KeyError:
                        pass  # the study is not created yet
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    print(json.dumps({"calls": calls, "errors": errors}))
""")


@pytest.mark.slow
def test_readers_never_break_study_creation_or_themselves(tmp_path) -> None:
    """20 creations of a new study while a read-only reader and a user's load_study hammer the
    file (the race showed 2 times in 5, so 20 clean rounds leave it no room)."""
    from hpo_helpers.core.runtime import Runtime
    from hpo_helpers.settings.config import load_hpo_config
    from hpo_helpers.storage.paths import resolve
    from hpo_helpers.study.store import open_study

    raw = dict(TINY_HPO, data_config="x.yaml")
    f = tmp_path / "hpo.yaml"
    f.write_text(yaml.safe_dump(raw))
    hpo = load_hpo_config(f)
    stop = tmp_path / "stop"
    readers = {}
    rounds = 20
    sweep_errors = []
    db = None
    try:
        for i in range(rounds):
            paths = resolve(Runtime("local", tmp_path), backbone="tiny",
                            storage_path="{backbone}/study.db", output_dir=tmp_path / f"r{i}")
            db = paths.working_db
            db.parent.mkdir(parents=True)
            for mode in ("status", "user"):
                readers[(i, mode)] = subprocess.Popen(
                    [PYTHON, "-c", _READER, str(db), str(stop) + str(i), mode],
                    stdout=subprocess.PIPE, text=True, env=_env())
            time.sleep(1.5 if i == 0 else 0.3)  # the readers are up and polling
            try:
                opened = open_study(hpo=hpo, backbone="tiny", paths=paths,
                                    fingerprint_parts={"x": 1}, sampler=None, pruner=None)
                opened.study.enqueue_trial({})
                opened.close()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                sweep_errors.append(f"round {i}: {type(exc).__name__}: {exc}")
            time.sleep(0.3)
            (Path(str(stop) + str(i))).touch()
    finally:
        for i in range(rounds):
            Path(str(stop) + str(i)).touch()
    results = {k: json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])
               for k, p in readers.items()}
    assert sweep_errors == []
    status_errors = [e for (i, m), r in results.items() if m == "status" for e in r["errors"]]
    user_errors = [e for (i, m), r in results.items() if m == "user" for e in r["errors"]]
    assert status_errors == []
    assert user_errors == []
    assert sum(r["calls"] for r in results.values()) > rounds * 4


def test_a_half_made_file_reads_as_no_study_and_is_not_touched(project) -> None:
    from hpo_helpers import load_configs, study_status

    db = project.output_dir / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    before = db.read_bytes()
    info = study_status(load_configs(project.config_dir, project.hpo),
                        output_dir=project.output_dir)
    assert info["exists"] is False
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["study.db"]


# ---------------------------------------------------------------------------------------------
# The printed resume command (finding 12)


def test_resume_command_carries_every_flag_and_no_secret(monkeypatch) -> None:
    from hpo_helpers.frontends.cli import _parser, resume_command

    args = _parser().parse_args([
        "run", "--config", "c/h p.yaml", "--backbone", "tiny", "--output-dir", "o ut",
        "--dataset", "d/x.json", "--max-trials", "7", "--mlflow-experiment", "exp",
        "--tracking-uri", "https://u:pa/ss@mlflow.example/x", "--storage-url",
        "postgresql+psycopg://u:pa/ss@h/d", "--config-dir", "c", "--durable-url", "s3://b/p"])
    cmd = resume_command(args)
    assert "pa/ss" not in cmd
    monkeypatch.setenv("HPO_STORAGE_URL", "postgresql+psycopg://u:pa/ss@h/d")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://u:pa/ss@mlflow.example/x")
    argv = shlex.split(os.path.expandvars(cmd))
    assert argv[:4] == [sys.executable, "-m", "hpo_helpers", "run"]
    again = _parser().parse_args(argv[3:])
    for key in ("backbone", "max_trials", "mlflow_experiment", "tracking_uri", "storage_url",
                "durable_url"):
        assert getattr(again, key) == getattr(args, key), key
    for key in ("config", "output_dir", "dataset", "config_dir"):  # absolute: any folder
        assert getattr(again, key) == os.path.abspath(getattr(args, key)), key


@pytest.mark.slow
def test_the_printed_command_resumes_the_interrupted_run(project, tmp_path) -> None:
    import re

    data = tmp_path / "other-data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.json").write_text((project.dataset / f"{split}.json").read_text())
    space = dict(TINY_HPO["search_space"], epochs=3)
    project.write_hpo(max_trials=1, search_space=space)
    env = _env()
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env['PATH']}"
    cmd = project.cli("run", "--config", str(project.hpo), "--output-dir",
                      str(project.output_dir), "--dataset", str(data), "--max-trials", "2",
                      "--mlflow-experiment", "resume-line", "--tracking-uri",
                      f"sqlite:///{tmp_path / 'mlruns.db'}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(r"Trial 0 started", line):
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(120) == 130, "".join(lines)
    printed = next(ln for ln in lines if "To resume" in ln and "python -m" in ln)
    command = "python -m" + printed.split("python -m", 1)[1].strip()
    assert "--dataset" in command and "--max-trials 2" in command
    assert "--mlflow-experiment resume-line" in command
    res = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "COMPLETE 2/2" in res.stdout
    assert "resumed" in res.stderr  # the same study, not a new one


# ---------------------------------------------------------------------------------------------
# The secret never appears: a real sweep on PostgreSQL with a '/' in the password (2, 3)

PG_PASSWORD = "S3cr/t:pa@ss#x/" + uuid.uuid4().hex[:6]


@pytest.fixture
def secret_pg_url(pg_url):  # noqa: F811 - the fixture imported above
    """``pg_url``'s database, owned by a new role whose password holds '/', ':', '@', '#'."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(pg_url).database
    role = f"hpo_secret_{uuid.uuid4().hex[:8]}"

    def admin(db: str, *sql: str) -> None:
        with psycopg.connect(f"host=127.0.0.1 port=5432 dbname={db} user=postgres",
                             autocommit=True) as con:
            for statement in sql:
                con.execute(statement)

    quoted = PG_PASSWORD.replace("'", "''")
    admin("test", f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'",
          f'ALTER DATABASE "{name}" OWNER TO {role}')
    admin(name, f"ALTER SCHEMA public OWNER TO {role}")
    # '/' and ':' stay raw (SQLAlchemy accepts them); '@' and '#' must be quoted in a URL
    pw = PG_PASSWORD.replace("@", "%40").replace("#", "%23")
    try:
        yield f"postgresql+psycopg://{role}:{pw}@127.0.0.1:5432/{name}"
    finally:
        admin(name, f"REASSIGN OWNED BY {role} TO postgres", f"DROP OWNED BY {role}")
        admin("test", f'ALTER DATABASE "{name}" OWNER TO postgres', f"DROP ROLE {role}")


def _secret_forms() -> list[bytes]:
    from urllib.parse import quote

    forms = {PG_PASSWORD, PG_PASSWORD.replace("@", "%40").replace("#", "%23"),
             quote(PG_PASSWORD, safe="")}
    return [f.encode() for f in forms]


def _grep(blob: bytes, where: str) -> None:
    for form in _secret_forms():
        assert form not in blob, f"the password appears in {where}"


@pytest.mark.slow
def test_no_secret_anywhere_after_a_sweep_on_postgresql(project, tmp_path,
                                                        secret_pg_url) -> None:
    from mlflow import MlflowClient

    project.write_hpo(max_trials=2, heartbeat_interval=1, grace_period=4)
    mlruns = tmp_path / "mlruns"
    env = _env()
    env["HPO_STORAGE_URL"] = secret_pg_url
    run = subprocess.run(project.run_args("--mlflow-experiment", "secret", "--tracking-uri",
                                          f"sqlite:///{mlruns / 'mlflow.db'}", "--debug"),
                         capture_output=True, env=env, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    _grep(run.stdout + run.stderr, "the run's output and log")
    status = subprocess.run(project.cli("status", "--config", str(project.hpo)),
                            capture_output=True, env=env, timeout=300, cwd=tmp_path)
    status_json = subprocess.run(project.cli("status", "--config", str(project.hpo), "--json"),
                                 capture_output=True, env=env, timeout=300, cwd=tmp_path)
    assert json.loads(status_json.stdout)["n_complete"] == 2
    _grep(status.stdout + status.stderr + status_json.stdout + status_json.stderr, "status")
    # the dashboard: its arguments (ps) and its log
    dash = subprocess.Popen(project.cli("dashboard", "--config", str(project.hpo), "--port",
                                        str(_free_port())),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp_path)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"optuna-dashboard:" not in seen and time.monotonic() < deadline:
            seen += dash.stdout.readline()
        assert b"optuna-dashboard:" in seen, seen
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True).stdout
        assert b"hpo_helpers.frontends.dashboard" in ps
        _grep(ps, "ps")
    finally:
        dash.send_signal(signal.SIGINT)
        try:
            rest = dash.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            dash.kill()
            rest = dash.communicate()[0]
    _grep(seen + rest, "the dashboard's log")
    # every file the run wrote (output folder, MLflow store with its artifacts, cwd)
    for f in [*project.root.rglob("*"), *tmp_path.rglob("*")]:
        if f.is_file():
            _grep(f.read_bytes(), str(f))
    # the study: user and system attrs of the study and of every trial
    study = optuna.load_study(study_name="hpo_tiny", storage=secret_pg_url)
    blob = json.dumps([study.user_attrs, study._storage.get_study_system_attrs(study._study_id),
                       [(t.user_attrs, t.system_attrs, t.params) for t in study.trials]],
                      default=str)
    _grep(blob.encode(), "the study's attributes")
    # MLflow: params, tags of every run
    client = MlflowClient(tracking_uri=f"sqlite:///{mlruns / 'mlflow.db'}")
    exp = client.get_experiment_by_name("secret")
    runs = client.search_runs([exp.experiment_id])
    assert runs
    parent = next(r for r in runs if r.data.tags.get("hpo.kind") == "sweep")
    assert parent.data.params["checkpoint_storage_type"] == "postgresql"
    for r in runs:
        _grep(json.dumps([r.data.params, r.data.tags]).encode(), f"MLflow run {r.info.run_id}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_server_gets_no_secret_in_its_arguments(tmp_path, caplog) -> None:
    """The storage travels in the environment; ``ps`` and the log show no password."""
    from hpo_helpers.frontends.dashboard import start_dashboard

    pytest.importorskip("optuna_dashboard")
    db = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    secret = "hunter2/" + uuid.uuid4().hex[:6]
    fake = f"sqlite:///{db}?password={secret}"  # a URL whose query holds a secret
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        dash = start_dashboard(fake)
    try:
        args = Path(f"/proc/{dash.process.pid}/cmdline").read_bytes()
        assert b"hpo_helpers.frontends.dashboard" in args
        assert secret.encode() not in args and b"study.db" not in args
    finally:
        dash.stop()
    assert secret not in caplog.text


# ---------------------------------------------------------------------------------------------
# Hostile names (findings 1 and 10): refused in one line, nothing written outside the output
# folder, no unrelated folder touched


@pytest.mark.parametrize("name", ["/elsewhere/victim", "../../../victim", "../victim",
                                  ".hidden", "a/b", "x" * 101, "tab\tname", "ok\n"])
def test_a_hostile_study_name_is_one_line_and_touches_nothing(project, tmp_path, name) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    project.write_hpo(study_name=name)
    before = sorted(p for p in tmp_path.rglob("*") if "__pycache__" not in p.parts)
    res = _cli(project, *project.run_args()[3:])
    _one_line_error(res, r"study_name")
    assert (victim / "keep.txt").read_text() == "mine"
    assert not project.output_dir.exists()
    after = sorted(p for p in tmp_path.rglob("*") if "__pycache__" not in p.parts)
    assert after == before


def test_a_yaml_alias_bomb_is_a_short_one_line_error(project) -> None:
    from .test_config import ALIAS_BOMB

    project.hpo.write_text(ALIAS_BOMB + yaml.safe_dump(
        {k: v for k, v in TINY_HPO.items() if k != "backbone"}))
    start = time.monotonic()
    res = _cli(project, *project.run_args()[3:], timeout=60)
    assert time.monotonic() - start < 30
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(res.stderr) < 2000, len(res.stderr)  # one error naming the file, short lines
    assert res.stderr.startswith("error: ") and "test.yaml: 2 problems" in res.stderr
    assert "key 'backbone' = [[[" in res.stderr and "..." in res.stderr


# ---------------------------------------------------------------------------------------------
# Damaged files: checkpoints (finding 6), databases and snapshots (findings 7 and 8). Each ends
# in a clean recovery; the damaged file is kept aside; no finished trial or kept model is lost.


class _Evil:
    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):
        return (open, (str(self.flag), "w"))  # would create the flag file if unpickled freely


def _damage_checkpoint(ckpt: Path, style: str, flag: Path) -> None:
    import pickle

    model, training = ckpt / "model.pt", ckpt / "training_state.pt"
    if style == "truncated model.pt":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif style == "bad JSON":
        (ckpt / "trainer_state.json").write_text('{"epoch": 1, "step_in')
    elif style == "zeroed training_state.pt":
        training.write_bytes(b"\0" * training.stat().st_size)
    elif style in ("malicious pickle", "malicious pickle, no checksum"):
        training.write_bytes(pickle.dumps(_Evil(flag)))
        if style.endswith("no checksum"):  # as a checkpoint of the code before checksums
            (ckpt / "checksums.json").unlink()
    elif style == "64 random bytes in model.pt":
        data = bytearray(model.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = os.urandom(64)
        model.write_bytes(bytes(data))
    else:
        raise AssertionError(style)


CHECKPOINT_DAMAGE = ["truncated model.pt", "bad JSON", "zeroed training_state.pt",
                     "malicious pickle", "malicious pickle, no checksum",
                     "64 random bytes in model.pt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hpo_helpers.data.dataset import load_dataset
    from hpo_helpers.settings.config import load_data_config, load_train_config
    from hpo_helpers.training.backbones import load_backbone
    from hpo_helpers.training.encoding import encode_documents

    from .test_train import _demo_data

    tmp = tmp_path_factory.mktemp("hostile-train")
    ds = load_dataset(compact_dataset(tmp / "data"), load_data_config(
        {**_demo_data(), "max_train_documents": 12, "max_eval_documents": 5}))
    bb = load_backbone("tiny", REPO / "config", texts=[" ".join(d.words) for d in ds.train],
                       cache_dir=tmp / "tok")
    l2i = {lab: i for i, lab in enumerate(ds.labels)}
    return {"ds": ds, "bb": bb,
            "cfg": load_train_config({"max_length": 64, "stride": 16, "torch_threads": 1}),
            "tw": encode_documents(ds.train, bb.tokenizer, l2i, max_length=64, stride=16),
            "ew": encode_documents(ds.validation, bb.tokenizer, l2i, max_length=64, stride=16)}


def _fit(trained, trial_dir: Path, **kw):
    from hpo_helpers.training.train import fit

    from .test_train import PARAMS

    return fit(backbone=trained["bb"], labels=trained["ds"].labels,
               train_windows=trained["tw"], eval_docs=trained["ds"].validation,
               eval_windows=trained["ew"], params=PARAMS, cfg=trained["cfg"], seed=11,
               checkpoint_dir=trial_dir, **kw)


def _stop_after_epochs(trained, trial_dir: Path, n: int):
    seen: list[int] = []
    return _fit(trained, trial_dir, on_epoch=lambda e, m: seen.append(e),
                should_stop=lambda: len(seen) >= n)


@pytest.mark.parametrize("style", CHECKPOINT_DAMAGE)
def test_a_damaged_checkpoint_is_set_aside_and_the_trial_completes(trained, tmp_path, style,
                                                                   caplog) -> None:
    from hpo_helpers.storage.checkpoints import latest_checkpoint

    trial_dir = tmp_path / "trial_0"
    _stop_after_epochs(trained, trial_dir, 1)
    ckpt = latest_checkpoint(trial_dir)
    flag = tmp_path / "pwned"
    _damage_checkpoint(ckpt, style, flag)
    damaged = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    with caplog.at_level(logging.ERROR, logger="hpo_helpers"):
        result = _fit(trained, trial_dir)
    assert not flag.exists()  # no code ran from the file
    assert result.resumed_from_epoch is None and len(result.history) == 3  # epoch 0, complete
    assert "cannot be read" in caplog.text and "Set aside as" in caplog.text
    aside = [p for p in tmp_path.iterdir() if ".unreadable-" in p.name]
    assert len(aside) == 1 and {p.name: p.read_bytes() for p in aside[0].iterdir()} == damaged


def test_a_damaged_checkpoint_falls_back_to_the_previous_good_one(trained, tmp_path) -> None:
    import shutil

    from hpo_helpers.storage.checkpoints import latest_checkpoint

    trial_dir = tmp_path / "trial_0"
    first = _stop_after_epochs(trained, trial_dir, 1)
    good = latest_checkpoint(trial_dir)
    newer = trial_dir / f"checkpoint-{first.global_step + 5}"
    shutil.copytree(good, newer)
    _damage_checkpoint(newer, "64 random bytes in model.pt", tmp_path / "flag")
    result = _fit(trained, trial_dir)
    assert result.resumed_from_epoch == 1 and len(result.history) == 3
    assert [p for p in tmp_path.iterdir() if ".unreadable-" in p.name]


def test_a_checkpoint_without_checksums_still_loads_logged_once(trained, tmp_path,
                                                                caplog) -> None:
    from hpo_helpers.storage.checkpoints import latest_checkpoint, read_state

    trial_dir = tmp_path / "trial_0"
    _stop_after_epochs(trained, trial_dir, 1)
    ckpt = latest_checkpoint(trial_dir)
    assert json.loads((ckpt / "checksums.json").read_text())["sha256"]  # written with them
    (ckpt / "checksums.json").unlink()  # as the code on main today writes checkpoints
    with caplog.at_level(logging.WARNING, logger="hpo_helpers"):
        read_state(ckpt)
        result = _fit(trained, trial_dir)
    assert result.resumed_from_epoch == 1 and len(result.history) == 3
    assert caplog.text.count("loaded unverified") == 1


def test_a_failed_trial_with_a_damaged_folder_is_set_aside_not_deleted(project,
                                                                        monkeypatch) -> None:
    import dataclasses

    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.core.errors import CheckpointError, SweepFailedError

    def damaged_fit(*, checkpoint_dir, **_kw):
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (checkpoint_dir / "evidence.txt").write_text("look at me")
        raise CheckpointError(f"checkpoint {checkpoint_dir} does not fit this trial's model")

    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    with pytest.raises(SweepFailedError, match="3 trials failed in a row"):
        run_sweep(cfg, output_dir=project.output_dir, fit=damaged_fit)
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    for n in range(3):  # the last one too, where the sweep stops
        aside = [p for p in trials.iterdir() if p.name.startswith(f"trial_{n}.damaged-")]
        assert len(aside) == 1 and (aside[0] / "evidence.txt").read_text() == "look at me"


def _checkpointed(db: Path) -> bytes:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return db.read_bytes()


def _damage_database(db: Path, style: str) -> bytes:
    data = bytearray(_checkpointed(db))
    if style == "bytes on the schema page":  # a table's name, not UTF-8, and its SQL broken:
        import re  # SQLite's "malformed database schema (<name>)" cannot be decoded

        name = re.search(rb"table(studies)studies", data).span(1)
        data[name[0]:name[1]] = b"\xff\xfe\xfd\xfc\xfb\xfa\xf9"
        at = data.index(b"CREATE TABLE studies")
        data[at:at + 12] = b"CREATE TABLX"
    elif style == "bytes inside the stored fingerprint":
        # the study attribute's record: its key and JSON value lie side by side
        at = data.index(b'fingerprint{"') + len(b"fingerprint")
        data[at:at + 2] = b"\x01!"
    elif style == "truncated":
        del data[len(data) // 2:]
    elif style == "zeroed second page":
        data[4096:8192] = bytes(4096)
    elif style == "garbage header":
        data[:16] = os.urandom(16)
    else:
        raise AssertionError(style)
    db.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return bytes(data)


DATABASE_DAMAGE = ["bytes on the schema page", "bytes inside the stored fingerprint",
                   "truncated", "zeroed second page", "garbage header"]


def _sweep(project, runtime=None, max_trials: int = 1):
    from .test_durability import _run

    return _run(project, runtime, max_trials)


def _files_under(root: Path, part: str) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and part in p.parts}


@pytest.mark.parametrize("style", DATABASE_DAMAGE)
def test_a_damaged_database_without_snapshot_starts_a_new_study_and_keeps_everything(
        project, style, caplog) -> None:
    from optuna.trial import TrialState

    from hpo_helpers import load_configs
    from hpo_helpers.study.status import status

    _sweep(project)
    db = project.output_dir / "tiny" / "study.db"
    models = _files_under(project.output_dir, "models")
    assert models  # the first study's kept model
    bad = _damage_database(db, style)
    with caplog.at_level(logging.ERROR):
        out = _sweep(project)
    assert "is damaged" in caplog.text and "a new study starts" in caplog.text
    aside = list(db.parent.glob("study.db.corrupt-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [bad]
    assert not out.resumed
    assert len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 1
    for path, data in models.items():  # finding 8: the old study's kept models are intact
        assert path.read_bytes() == data, path
    assert len(_files_under(project.output_dir, "models")) > len(models)  # a folder of its own
    info = status(load_configs(project.config_dir, project.hpo), output_dir=project.output_dir)
    assert info["n_complete"] == 1
    out = _sweep(project, max_trials=2)  # every later run works
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("style", DATABASE_DAMAGE)
def test_a_damaged_working_database_is_replaced_by_the_snapshot(project, tmp_path, style,
                                                                 caplog) -> None:
    from optuna.trial import TrialState

    from .test_durability import WORKING, _colab_runtime

    root, rt = _colab_runtime(tmp_path)
    _sweep(project, rt)
    working = root.joinpath(*WORKING, "study.db")
    bad = _damage_database(working, style)
    with caplog.at_level(logging.ERROR):
        out = _sweep(project, rt, max_trials=2)
    assert "restored the newest good snapshot" in caplog.text
    assert [p.read_bytes() for p in working.parent.glob("study.db.corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))] == [bad]
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("style", ["bytes on the schema page",
                                   "bytes inside the stored fingerprint"])
def test_a_damaged_snapshot_on_a_fresh_vm_is_kept_aside_and_a_new_study_starts(
        project, tmp_path, style, caplog) -> None:
    import shutil

    from .test_durability import DURABLE, _colab_runtime

    root, rt = _colab_runtime(tmp_path)
    _sweep(project, rt)
    durable = root.joinpath(*DURABLE, "study.db")
    models = _files_under(root.joinpath(*DURABLE), "models")
    bad = _damage_database(durable, style)
    shutil.rmtree(root / "content" / "resume-ner")  # fresh VM
    with caplog.at_level(logging.ERROR):
        out = _sweep(project, rt)
    assert [p.read_bytes() for p in durable.parent.glob("study.db.corrupt-*")] == [bad]
    assert not out.resumed
    for path, data in models.items():
        assert path.read_bytes() == data, path


@pytest.mark.parametrize("style", ["bytes on the schema page",
                                   "bytes inside the stored fingerprint"])
def test_status_on_a_damaged_database_is_one_line(project, style) -> None:
    _sweep(project)
    _damage_database(project.output_dir / "tiny" / "study.db", style)
    res = _cli(project, "status", "--config", str(project.hpo), "--output-dir",
               str(project.output_dir))
    _one_line_error(res, r"cannot read the study database .*study\.db: .*Fix: run the sweep")


def test_a_damaged_mirror_checkpoint_is_set_aside_not_pulled_again(trained, tmp_path,
                                                                   caplog) -> None:
    """A fresh VM must not pull the same damaged checkpoint from Drive on every start."""
    import shutil

    from hpo_helpers.storage.checkpoints import latest_checkpoint
    from hpo_helpers.storage.layout import StudyLayout
    from hpo_helpers.storage.mirror import CheckpointMirror

    layout = StudyLayout(study_name="s", trials_root=tmp_path / "local",
                         mirror_root=tmp_path / "drive")
    remote_trial = tmp_path / "drive" / "trial_0"
    first = _stop_after_epochs(trained, remote_trial, 1)
    good = latest_checkpoint(remote_trial)
    newer = remote_trial / f"checkpoint-{first.global_step + 5}"
    shutil.copytree(good, newer)
    _damage_checkpoint(newer, "truncated model.pt", tmp_path / "flag")
    mirror = CheckpointMirror(layout)
    try:
        with caplog.at_level(logging.ERROR, logger="hpo_helpers"):
            pulled = mirror.pull(tmp_path / "local" / "trial_0")
    finally:
        mirror.close()
    assert [p.name for p in pulled] == [good.name]
    assert "Its durable mirror copy is set aside" in caplog.text
    assert [p.name.split(".")[0] for p in remote_trial.iterdir() if ".unreadable-" in p.name] \
        == [newer.name]
    assert latest_checkpoint(remote_trial) == good


# ---------------------------------------------------------------------------------------------
# Round two (issue 23): each test reproduces one finding of the second probe


@pytest.mark.parametrize("name", ["ok\n", "tiny\n", "a\nb"])
def test_a_trailing_newline_fails_the_name_check(name) -> None:
    """Item 13: the pattern ended with ``$``, which also matches before a final newline."""
    from hpo_helpers.core.errors import ConfigError
    from hpo_helpers.core.names import check_name

    with pytest.raises(ConfigError, match=r"cannot be used in a path"):
        check_name(name, key="study_name", fix="rename it")


@pytest.mark.parametrize("value,why", [("99999999999999999999", r"must be <= 100000"),
                                       ("100001", r"must be <= 100000"),
                                       ("0", r"must be >= 1")])
def test_max_trials_on_the_command_line_has_the_configs_limit(project, value, why) -> None:
    """Item 11: the config refused more than 100,000 trials; the flag took any number (243
    trials ran before the probe stopped it). One line in the config's style; nothing runs."""
    res = _cli(project, *project.run_args("--max-trials", value)[3:])
    _one_line_error(res, rf"--max-trials: key 'max_trials' = {value} is out of range "
                         rf"\({why}\)\. Fix: set max_trials to a value")
    assert not project.output_dir.exists()


def _plant(lock: Path, kind: str, victim: Path) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_planted_study_lock_is_refused_never_followed(tmp_path, kind) -> None:
    """Item 3: ``study.db.lock -> victim.txt`` truncated the victim to "pid ... since ...".
    The lock is opened with O_NOFOLLOW|O_NONBLOCK and used only as a regular file."""
    from hpo_helpers.core.errors import StudyError
    from hpo_helpers.study.store import StudyLock, lock_holder

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    db = tmp_path / "out" / "study.db"
    _plant(Path(f"{db}.lock"), kind, victim)
    start = time.monotonic()
    with pytest.raises(StudyError, match=r"study\.db\.lock is not a regular file .*Fix: remove"):
        StudyLock(db)
    assert lock_holder(db) is None  # a reader is not fooled and does not wait either
    assert time.monotonic() - start < 10
    assert victim.read_text() == "precious"


def test_a_run_on_a_symlinked_lock_is_one_line_and_leaves_the_target(project, tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    _plant(project.output_dir / "tiny" / "study.db.lock", "symlink", victim)
    res = _cli(project, *project.run_args("--max-trials", "1")[3:])
    _one_line_error(res, r"the study lock .*study\.db\.lock is not a regular file")
    assert victim.read_text() == "precious"


def test_a_fifo_planted_in_the_temp_folder_cannot_hang_a_reader(project, tmp_path) -> None:
    """Item 6: readers of a Drive study clean up dead ``hpo-read-*`` folders in the temp folder;
    one with a FIFO as ``.owner`` made ``status`` wait forever. Another user's folder is not
    ours to judge; ours is read without blocking."""
    drive_out = tmp_path / "vm" / "content" / "drive" / "MyDrive" / "out"
    db = drive_out / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    optuna.create_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    tmp = tmp_path / "tmp"
    planted = []
    for name in ("hpo-read-1-theirs", "hpo-read-2-mine"):
        folder = tmp / name
        folder.mkdir(parents=True)
        os.mkfifo(folder / ".owner")
        planted.append(folder)
    if os.getuid() == 0:  # as root we can make the first folder another user's
        os.chown(planted[0], 65534, 65534)
        os.chown(planted[0] / ".owner", 65534, 65534)
    env = dict(_env(), TMPDIR=str(tmp))
    start = time.monotonic()
    try:
        res = _cli(project, "status", "--config", str(project.hpo), "--output-dir",
                   str(drive_out), env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("status hung on a FIFO planted in the temp folder")
    assert res.returncode == 0, res.stderr
    assert "study hpo_tiny at" in res.stdout and time.monotonic() - start < 60
    if os.getuid() == 0:
        assert (planted[0] / ".owner").exists()  # another user's folder: left alone


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _study_snapshot(storage) -> list:
    out = []
    for name in sorted(optuna.get_all_study_names(storage)):
        s = optuna.load_study(study_name=name, storage=storage)
        out.append((name, s.user_attrs, s._storage.get_study_system_attrs(s._study_id),
                    [(t.number, t.state.name, t.values, t.user_attrs, t.system_attrs)
                     for t in s.trials]))
    return out


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_dashboard_refuses_every_write_over_http(tmp_path, request, kind) -> None:
    """Item 1: on PostgreSQL ``POST /api/studies`` created a study and ``DELETE
    /api/studies/1`` deleted hpo_tiny with its trials. Every write endpoint of the real
    optuna-dashboard, on loopback, for both storages: an error, and the study unchanged."""
    from hpo_helpers.frontends.dashboard import start_dashboard

    pytest.importorskip("optuna_dashboard")
    if kind == "sqlite":
        db = tmp_path / "study.db"
        target, storage = str(db), f"sqlite:///{db}"
    else:
        target = storage = request.getfixturevalue("pg_url")
    study = optuna.create_study(study_name="hpo_tiny", storage=storage)
    for x in (0.3, 0.7):
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    running = study.ask()
    before = _study_snapshot(storage)
    sid, tid = study._study_id, running._trial_id
    dash = start_dashboard(target)
    try:
        status, body = _http("GET", f"{dash.url}/api/studies")
        assert status == 200 and b"hpo_tiny" in body
        writes = [
            ("POST", "/api/studies", {"study_name": "evil", "directions": ["minimize"]}),
            ("DELETE", f"/api/studies/{sid}", None),
            ("POST", f"/api/studies/{sid}/rename", {"study_name": "renamed"}),
            ("PUT", f"/api/studies/{sid}/note", {"version": 0, "body": "pwned"}),
            ("PUT", f"/api/studies/{sid}/0/note", {"version": 0, "body": "pwned"}),
            ("POST", f"/api/trials/{tid}/tell", {"state": "Complete", "values": [9.0]}),
            ("POST", f"/api/trials/{tid}/user-attrs", {"user_attrs": {"pwned": 1}}),
            ("POST", f"/api/studies/{sid}/{tid}/skip", None),
            ("POST", f"/api/studies/{sid}/preference", {"candidates": [0, 1], "clicked": 0,
                                                         "mode": "ChooseWorst"}),
            ("POST", "/incompatible-rdb-schema", None),
        ]
        for method, path, body in writes:
            status, text = _http(method, dash.url + path, body)
            assert status == 405, (method, path, status, text[:300])
            assert b"read-only" in text
    finally:
        dash.stop()
    assert _study_snapshot(storage) == before


def test_the_read_only_storage_refuses_each_write_and_reads(tmp_path) -> None:
    """The wrapper behind the dashboard, whatever reaches it: every write raises."""
    from optuna.distributions import FloatDistribution
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from hpo_helpers.core.errors import StudyError
    from hpo_helpers.study.readonly import ReadOnlyStorage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    ro = ReadOnlyStorage(optuna.storages.RDBStorage(url))
    sid = ro.get_study_id_from_name("s")
    tid = ro.get_all_trials(sid)[0]._trial_id
    assert ro.get_n_trials(sid) == 2 and ro.get_best_trial(sid).value == study.best_value
    assert optuna.load_study(study_name="s", storage=ro).best_value == study.best_value
    writes = [lambda: ro.create_new_study([StudyDirection.MINIMIZE], "x"),
              lambda: ro.delete_study(sid), lambda: ro.set_study_user_attr(sid, "k", 1),
              lambda: ro.set_study_system_attr(sid, "k", 1), lambda: ro.create_new_trial(sid),
              lambda: ro.set_trial_param(tid, "y", 0.5, FloatDistribution(0, 1)),
              lambda: ro.set_trial_state_values(tid, TrialState.FAIL),
              lambda: ro.set_trial_intermediate_value(tid, 0, 1.0),
              lambda: ro.set_trial_user_attr(tid, "k", 1),
              lambda: ro.set_trial_system_attr(tid, "k", 1)]
    for write in writes:
        with pytest.raises(StudyError, match="served read-only"):
            write()
    assert ro.get_n_trials(sid) == 2 and optuna.get_all_study_names(url) == ["s"]


def _dashboard_servers(port: int) -> list[int]:
    """Pids of dashboard servers (our module) listening on ``port``, from /proc."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpo_helpers.frontends.dashboard" in args and str(port).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_dashboard_server_ends_with_its_command(project, sig) -> None:
    """Item 10: ``kill -TERM`` of ``dashboard`` left the server listening, adopted by PID 1.
    SIGTERM stops it through the command; after SIGKILL it notices its parent is gone."""
    pytest.importorskip("optuna_dashboard")
    db = project.output_dir / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    optuna.create_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    port = _free_port()
    cli = subprocess.Popen(project.cli("dashboard", "--config", str(project.hpo), "--output-dir",
                                       str(project.output_dir), "--port", str(port)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(),
                           cwd=project.root)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"optuna-dashboard:" not in seen and time.monotonic() < deadline:
            seen += cli.stdout.readline()
        assert b"optuna-dashboard:" in seen and _answers(port), seen
        servers = _dashboard_servers(port)
        assert len(servers) == 1
        cli.send_signal(sig)
        cli.wait(30)
        deadline = time.monotonic() + 15
        while (_answers(port) or _dashboard_servers(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(port), "the dashboard still listens after its command ended"
        assert not _dashboard_servers(port)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in _dashboard_servers(port):  # only a server this test started
            os.kill(pid, signal.SIGKILL)


# Model folders that ship code (item 2), bad input bytes (item 7), oversized input (item 8)

EVIL_PY = """
from pathlib import Path
Path({marker!r}).write_text("code from the model folder ran")
from transformers import DistilBertConfig, DistilBertForTokenClassification, \\
    PreTrainedTokenizerFast
class EvilConfig(DistilBertConfig):
    model_type = "evilnet"
class EvilModel(DistilBertForTokenClassification):
    config_class = EvilConfig
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A saved token-classification folder (random tiny DistilBERT), as a kept model is."""
    from hpo_helpers.training.backbones import load_backbone

    root = tmp_path_factory.mktemp("tiny-model")
    texts = ["Priya Sharma lives in Bangalore and writes Python"] * 20
    bb = load_backbone("tiny", REPO / "config", texts=texts, cache_dir=root / "tok")
    model = bb.build_model(["O", "B-NAME", "I-NAME"], dropout=0.1, seed=1)
    folder = root / "model"
    model.save_pretrained(folder)
    bb.tokenizer.save_pretrained(folder)
    return folder


def _evil_copy(tiny_model: Path, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A copy of the model folder whose config or tokenizer maps to ``evil.py``, which would
    write ``marker`` if anything imported it."""
    import shutil

    folder, marker = tmp_path / f"evil-{kind.replace(' ', '-')}", tmp_path / "PWNED"
    shutil.copytree(tiny_model, folder)
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
    if kind == "model":  # an architecture transformers does not know: only evil.py has it
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(model_type="evilnet", architectures=["EvilModel"],
                   auto_map={"AutoConfig": "evil.EvilConfig",
                             "AutoModelForTokenClassification": "evil.EvilModel"})
        (folder / "config.json").write_text(json.dumps(cfg))
    elif kind == "tokenizer":
        tok = json.loads((folder / "tokenizer_config.json").read_text())
        tok.update(tokenizer_class="EvilTokenizer",
                   auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
        (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    else:  # a known architecture that also names code: the library's own class is used
        cfg = json.loads((folder / "config.json").read_text())
        cfg["auto_map"] = {"AutoModelForTokenClassification": "evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder, marker


@pytest.mark.parametrize("kind", ["model", pytest.param("tokenizer", marks=pytest.mark.slow),
                                  pytest.param("known architecture", marks=pytest.mark.slow)])
def test_predict_never_runs_code_from_a_model_folder(tiny_model, tmp_path, kind) -> None:
    """Item 2: transformers asked on standard input whether to run the folder's code, so
    ``printf 'yes\\n...' | predict --model evil --input -`` ran it. Whatever stdin holds, it
    never runs: refused in one line, or the library's own class is used."""
    folder, marker = _evil_copy(tiny_model, tmp_path, kind)
    stdin = "yes\n" * 5 + "y\n1\nPriya Sharma lives in Bangalore\n"
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model", str(folder),
                          "--input", "-"], input=stdin, capture_output=True, text=True,
                         env=_env(), timeout=180, cwd=tmp_path)
    assert not marker.exists(), "code from the model folder ran"
    if kind != "model":  # transformers has the class itself: its own is used, evil.py never
        assert res.returncode == 0, res.stderr[-2000:]
    else:
        _one_line_error(res, r"cannot load the model \(it ships code of its own \(auto_map\), "
                             r"which is never run\)")
    assert "Do you wish to run the custom code" not in res.stdout + res.stderr


@pytest.mark.parametrize("kind", ["model", "tokenizer"])
def test_a_local_backbone_folder_never_runs_its_code(tiny_model, tmp_path, monkeypatch,
                                                     kind) -> None:
    """Item 2, the training side: a local folder as the backbone loads with
    ``trust_remote_code=False`` too (one BackboneError, no prompt on stdin)."""
    from hpo_helpers.core.errors import BackboneError
    from hpo_helpers.training.backbones import load_backbone

    folder, marker = _evil_copy(tiny_model, tmp_path, kind)
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n" * 20))
    backbone = load_backbone(str(folder), REPO / "config")  # the tokenizer: the library's own
    if kind == "model":
        with pytest.raises(BackboneError, match=r"could not be loaded: .*custom code"):
            backbone.build_model(["O", "B-NAME", "I-NAME"], dropout=0.1, seed=1)
    else:
        backbone.build_model(["O", "B-NAME", "I-NAME"], dropout=0.1, seed=1)
    assert not marker.exists()


def _predict_main(capsys, monkeypatch, args: list[str], stdin: bytes = b""):
    from hpo_helpers.frontends.cli import main

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = main(["predict", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.mark.parametrize("case,pattern", [
    ("invalid UTF-8 file", r"in\.txt: not UTF-8 text \(byte 6\)"),
    ("UTF-16 file", r"in\.txt: not UTF-8 text \(byte 0\)"),
    ("bad bytes on stdin", r"^error: -: not UTF-8 text \(byte 6\)"),
    ("deeply nested JSONL line", r"in\.txt:2: JSON nested too deeply"),
    ("lone surrogate in JSON", r"in\.txt: document 0: the text is not valid Unicode"),
    ("pickled pytorch_model.bin", r"cannot load the model \(UnpicklingError"),
])
def test_bad_predict_input_is_one_line(tiny_model, tmp_path, capsys, monkeypatch, case,
                                       pattern) -> None:
    """Item 7: each of these was a traceback (UnicodeDecodeError, RecursionError, a TypeError
    from the tokenizer, UnpicklingError)."""
    import pickle
    import shutil

    model, stdin, source = tiny_model, b"", str(tmp_path / "in.txt")
    data = {"invalid UTF-8 file": b"Priya \xff\xfe Sharma",
            "UTF-16 file": "Priya Sharma".encode("utf-16"),
            "deeply nested JSONL line": b'{"text": "a"}\n{"text": ' + b"[" * 100_000
                                        + b"]" * 100_000 + b"}\n",
            "lone surrogate in JSON": b'{"text": "Priya \\ud800 Sharma"}\n'}.get(case)
    if data is not None:
        Path(source).write_bytes(data)
    if case == "bad bytes on stdin":
        source, stdin = "-", b"Priya \xff\xfe\x80 Sharma\n"
    if case == "pickled pytorch_model.bin":
        Path(source).write_text("Priya Sharma")
        model = tmp_path / "pickled"
        shutil.copytree(tiny_model, model)
        (model / "model.safetensors").unlink()
        (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Evil(tmp_path / "PWNED")))
    res = _predict_main(capsys, monkeypatch, ["--model", str(model), "--input", source], stdin)
    _one_line_error(res, pattern)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("case,pattern", [
    ("nested 600 deep", r"deep\.yaml: nested too deeply to be a config"),
    ("UTF-16", r"deep\.yaml: not UTF-8 text \(byte 0\)"),
    ("Latin-1", r"deep\.yaml: not UTF-8 text \(byte 15\)"),
])
def test_a_config_that_cannot_be_read_is_one_line(project, capsys, case, pattern) -> None:
    """Item 7: a config nested about 600 deep was a RecursionError, a UTF-16 or Latin-1 one a
    UnicodeDecodeError."""
    from hpo_helpers.frontends.cli import main

    bad = project.hpo.with_name("deep.yaml")
    text = {"nested 600 deep": "backbone: " + "[" * 600 + "]" * 600 + "\n",
            "UTF-16": "backbone: tiny\n", "Latin-1": "study_name: caf\xe9\n"}[case]
    bad.write_bytes(text.encode("utf-16" if case == "UTF-16" else "latin-1"))
    code = main(["status", "--config", str(bad), "--config-dir", str(project.config_dir)])
    out = capsys.readouterr()
    _one_line_error(subprocess.CompletedProcess([], code, out.out, out.err), pattern)


@pytest.mark.slow
def test_predict_drops_resumes_over_the_training_limit(tiny_model, tmp_path) -> None:
    """Item 8: predict had no input cap (about 160 MB of memory per MB of input: 5 MB took
    1.2 GB and minutes). Resumes over max_document_chars are dropped and counted, as in
    training, and resumes are predicted one at a time: 3 MB costs what one resume costs."""
    normal = "Priya Sharma lives in Bangalore and writes Python. " * 3
    huge = "lorem ipsum " * (300_000 // 12)  # 300,000 characters: over the 200,000 limit
    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as fh:
        for i in range(20):
            fh.write(json.dumps({"text": huge if i % 2 else normal}) + "\n")
    assert inp.stat().st_size > 3_000_000
    code = textwrap.dedent(f"""
        import json, sys
        sys.argv = ["hpo_helpers", "predict", "--model", {str(tiny_model)!r}, "--input",
                    {str(inp)!r}]
        from hpo_helpers.frontends.cli import main
        code = main(sys.argv[1:])
        peak = int(next(l.split()[1] for l in open("/proc/self/status")
                        if l.startswith("VmHWM"))) / 1024
        print(json.dumps({{"code": code, "rss_mb": peak}}), file=sys.stderr)
    """)
    start = time.monotonic()
    res = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=_env(),
                         timeout=300, cwd=tmp_path)
    took = time.monotonic() - start
    got = json.loads(res.stderr.strip().splitlines()[-1])
    assert got["code"] == 0, res.stderr[-3000:]
    docs = {json.loads(line)["doc"] for line in res.stdout.splitlines()}
    assert docs and docs <= set(range(0, 20, 2))  # the normal resumes, numbered as in the input
    assert "dropped 10 documents over max_document_chars (200000 characters" in res.stderr
    assert got["rss_mb"] < 1200 and took < 120, (got, took)


def test_an_input_over_the_cap_is_one_line(tmp_path, monkeypatch) -> None:
    """Item 8: the whole input is capped too (MAX_INPUT_BYTES, 50 MB): one clear line."""
    from hpo_helpers.core.errors import HpoHelpersError
    from hpo_helpers.results import prediction

    monkeypatch.setattr(prediction, "MAX_INPUT_BYTES", 1000)
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"text": "Priya Sharma " * 10}) + "\n" + "\n" * 1000)
    with pytest.raises(HpoHelpersError, match=r"big\.jsonl: more than 0\.001 MB of input, the most "
                                              r"predict reads at once\. Fix: split it"):
        list(prediction.read_numbered(str(big)))
    stdin = io.TextIOWrapper(io.BytesIO(b"x" * 1001), encoding="utf-8")
    with pytest.raises(HpoHelpersError, match=r"^-: more than"):
        list(prediction.read_numbered("-", stdin))


def test_a_single_resume_over_the_limit_is_one_line(tiny_model, tmp_path) -> None:
    inp = tmp_path / "cv.txt"
    inp.write_text("x " * 150_000)  # 300,000 characters, one plain-text resume
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model", str(tiny_model),
                          "--input", str(inp)], capture_output=True, text=True, env=_env(),
                         timeout=300, cwd=tmp_path)
    _one_line_error(res, r"cv\.txt: all 1 documents are longer than max_document_chars = "
                         r"200000 characters")


FIXED_SPACE = {"learning_rate": 0.002, "batch_size": 8, "dropout": 0.1, "weight_decay": 0.001,
               "warmup_ratio": 0.0, "epochs": 3}


@pytest.mark.slow
def test_a_killed_trial_of_a_fixed_space_continues_from_its_checkpoint(project) -> None:
    """Item 4: with only fixed values nothing is sampled, Optuna records no params, and a
    SIGKILLed trial was "interrupted before it sampled params; not re-queued": its
    checkpoints removed, the next trial from epoch 0. It is re-queued and continues."""
    from .test_kill_resume import _checkpointed, _load, _running_trial, _slower_trials, _wait_for

    _slower_trials(project)
    project.write_hpo(max_trials=1, search_space=FIXED_SPACE)
    db = project.output_dir / "tiny" / "study.db"
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    proc = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _running_trial(db) == 0 and _checkpointed(trials, 0), 240, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # a real kill: no handler runs
    proc.wait(30)
    assert _load(db).trials[0].params == {}  # nothing sampled
    rerun = subprocess.run(project.run_args(), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "not re-queued" not in rerun.stderr
    assert "re-queued with the same params" in rerun.stderr
    after = _load(db)
    retry = next(t for t in after.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["retry_root"] == 0
    assert retry.user_attrs["resumed_from_epoch"] >= 1  # its work was kept, not redone
    assert after.trials[0].user_attrs["fixed_params"] == FIXED_SPACE
    assert retry.user_attrs["fixed_params"] == FIXED_SPACE


def _outside(root: Path, inside: Path, before: set[Path]) -> set[Path]:
    """Paths made under ``root`` since ``before`` that are not ``inside`` or below it."""
    return {p for p in set(root.rglob("*")) - before if inside not in (p, *p.parents)}


@pytest.mark.parametrize("name", ["out ?#%41 ü €",
                                  pytest.param("%2F..%2F", marks=pytest.mark.slow),
                                  pytest.param("q?mode=ro#frag", marks=pytest.mark.slow)])
def test_mlflow_store_in_a_folder_named_like_a_uri_stays_inside_it(tmp_path, name) -> None:
    """Item 5: MLflow's SQLite URI was built by pasting the path: in ``out ?#%41 ü €`` the
    database went to a file named ``.../proj `` outside the project, and ``%2F..%2F`` was
    decoded into ``/../``. The URI is built by quoting the path (as the study's)."""
    from mlflow import MlflowClient

    from hpo_helpers.core.runtime import detect
    from hpo_helpers.tracking.setup import setup_mlflow_cross_platform

    project = tmp_path / "proj" / name
    project.mkdir(parents=True)
    before = set(tmp_path.rglob("*"))
    setup = setup_mlflow_cross_platform("exp", runtime=detect({}, root=tmp_path), cwd=project)
    assert setup is not None and setup.local_db == project / "mlruns" / "mlflow.db"
    client = MlflowClient(setup.tracking_uri)
    run = client.create_run(setup.experiment_id)
    client.log_metric(run.info.run_id, "val_f1", 0.5)
    client.log_text(run.info.run_id, "artifact", "note.txt")
    client.set_terminated(run.info.run_id)
    db = project / "mlruns" / "mlflow.db"
    assert db.is_file()
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        con.close()
    assert _outside(tmp_path, project, before) == set()
    assert list(project.rglob("note.txt"))


def test_an_experiment_name_never_becomes_a_path(tmp_path) -> None:
    """Item 12: ``select --mlflow-experiment ../../../esc_sel`` wrote its artifacts outside the
    project: the experiment's folder was the name pasted onto the artifact root."""
    from mlflow import MlflowClient

    from hpo_helpers.core.runtime import detect
    from hpo_helpers.tracking.setup import setup_mlflow_cross_platform

    project = tmp_path / "a" / "b" / "proj"
    project.mkdir(parents=True)
    before = set(tmp_path.rglob("*"))
    setup = setup_mlflow_cross_platform("../../../esc_sel", runtime=detect({}, root=tmp_path),
                                        cwd=project)
    assert setup is not None and setup.experiment_name == "../../../esc_sel"
    client = MlflowClient(setup.tracking_uri)
    run = client.create_run(setup.experiment_id, run_name="model-selection")
    client.log_text(run.info.run_id, "# chosen", "selection.md")
    assert _outside(tmp_path, project, before) == set()
    [md] = project.rglob("selection.md")
    assert md.parent.parent.parent.parent == project / "mlruns" / "artifacts"


def test_a_long_or_odd_label_never_turns_tracking_off(tmp_path) -> None:
    """Also: a label over 250 characters made a metric name MLflow refuses, and tracking went
    off for the session. Metric names are shortened (or made safe) with a hash, never lost."""
    from mlflow import MlflowClient

    from hpo_helpers.core.runtime import detect
    from hpo_helpers.tracking.setup import setup_mlflow_cross_platform
    from hpo_helpers.tracking.tracker import SweepTracker

    setup = setup_mlflow_cross_platform("labels", runtime=detect({}, root=tmp_path),
                                        cwd=tmp_path)
    tracker = SweepTracker(setup)
    study = optuna.create_study(study_name="s", direction="maximize")
    tracker.open(study, backbone="tiny", max_trials=1, checkpoint_path=None, resumed=False,
                 runtime="local", objective_metric="f1", recovered=[])
    trial = study.ask()
    tracker.trial_started(trial, {"epochs": 1})
    labels = ["X" * 300, "X" * 299 + "Y", "$\\frac{$", "A/../B", "SKILL"]
    per = {lab: 0.1 * i for i, lab in enumerate(labels)}
    tracker.epoch(trial, 0, {"f1": 0.5, "precision": 0.5, "recall": 0.5, "train_loss": 1.0,
                             "per_entity": per})
    study.tell(trial, 0.5)
    tracker.test_scores(study, {trial.number: {"f1": 0.4, "precision": 0.4, "recall": 0.4,
                                               "macro_f1": 0.4,
                                               "per_type": {k: {"f1": v} for k, v in per.items()}}})
    assert tracker.active, "tracking was turned off over a label"
    run = MlflowClient(setup.tracking_uri).get_run(trial.user_attrs["mlflow_run_id"])
    val = [k for k in run.data.metrics if k.startswith("val_f1_")]
    test = [k for k in run.data.metrics if k.startswith("test_f1_")]
    assert len(val) == len(test) == len(labels)  # one metric per label, none shared
    assert "val_f1_SKILL" in val and all(len(k) <= 250 for k in val + test)


BAD_STATES = {  # the right keys with values of the wrong kind (trainer_state.json has no checksum)
    "epoch 'two'": {"epoch": "two"},
    "epoch true": {"epoch": True},
    "step_in_epoch 1.5": {"step_in_epoch": 1.5},
    "global_step null": {"global_step": None},
    "negative epoch_loss_n": {"epoch_loss_n": -3},
    "best_f1 'high'": {"best_f1": "high"},
    "history a mapping": {"history": {}},
    "history of numbers": {"history": [1]},
    "history longer than the epochs": {"history": "<doubled>"},
    "params a list": {"params": [1, 2]},
}


@pytest.mark.parametrize("style", list(BAD_STATES))
def test_a_checkpoint_state_with_wrong_types_is_set_aside_and_the_trial_completes(
        trained, tmp_path, style, caplog) -> None:
    """Item 9: ``"epoch": "two"`` failed the retry with a traceback (and the trial's folder was
    deleted). The state's types are checked at load: the checkpoint is set aside as
    ``.unreadable-`` and training falls back to the previous one or epoch 0."""
    from hpo_helpers.storage.checkpoints import STATE_FILE, latest_checkpoint

    trial_dir = tmp_path / "trial_0"
    _stop_after_epochs(trained, trial_dir, 1)
    ckpt = latest_checkpoint(trial_dir)
    state = json.loads((ckpt / STATE_FILE).read_text())
    change = dict(BAD_STATES[style])
    if change.get("history") == "<doubled>":
        change["history"] = state["history"] * 2
    state.update(change)
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    with caplog.at_level(logging.ERROR, logger="hpo_helpers"):
        result = _fit(trained, trial_dir)
    assert result.resumed_from_epoch is None and len(result.history) == 3  # epoch 0, complete
    assert "cannot be read" in caplog.text and "Set aside as" in caplog.text
    aside = [p for p in tmp_path.iterdir() if ".unreadable-" in p.name]
    assert len(aside) == 1 and json.loads((aside[0] / STATE_FILE).read_text()) == state


def test_a_trial_that_fails_after_resuming_keeps_its_folder(project) -> None:
    """Item 9, the README's promise: a trial that fails on what its checkpoint held keeps its
    folder as ``trial_<n>.damaged-<time>``, whatever the error; never a silent delete."""
    import dataclasses

    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.core.errors import SweepFailedError

    def fails_after_resuming(*, checkpoint_dir, on_resume, **_kw):
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (checkpoint_dir / "evidence.txt").write_text("the checkpoint it resumed from")
        on_resume(1, 7)  # it resumed from epoch 1 ...
        raise TypeError("int() argument must be a string, not 'list'")  # ... and broke

    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1,
                                                           max_failed_trials=1))
    with pytest.raises(SweepFailedError, match="1 trials failed in a row"):
        run_sweep(cfg, output_dir=project.output_dir, fit=fails_after_resuming)
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    aside = [p for p in trials.iterdir() if p.name.startswith("trial_0.damaged-")]
    assert len(aside) == 1
    assert (aside[0] / "evidence.txt").read_text() == "the checkpoint it resumed from"


def test_report_draws_labels_as_plain_text(tmp_path) -> None:
    """Item 14: ``report`` crashed on mathtext in an entity type (``$\\frac{$``): labels from
    the data are drawn as plain text."""
    from hpo_helpers.results.report import write_report

    study = optuna.create_study(study_name="hpo_tiny", direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'study.db'}")
    for x in (0.2, 0.6):
        study.enqueue_trial({"$x^{$": x})
        study.optimize(lambda t: t.suggest_float("$x^{$", 0, 1), n_trials=1)
    per_type = {"$\\frac{$": {"f1": 0.5}, "$$": {"f1": 0.1}, "SKILL": {"f1": 0.7}}
    study.set_user_attr("test_scores", {str(study.best_trial.number): {
        "f1": 0.5, "macro_f1": 0.4, "per_type": per_type}})
    paths = write_report({"hpo_tiny": study}, tmp_path / "report")
    assert {p.name for p in paths} >= {"hpo_tiny_test_per_type.png", "hpo_tiny_params.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--storage-url", "HPO_STORAGE_URL"])
def test_select_reads_the_shared_study(project, pg_url, tiny_model, how) -> None:  # noqa: F811
    """Item 15: ``select`` ignored ``--storage-url`` and ``HPO_STORAGE_URL`` and said no study
    exists. A finished study on the real PostgreSQL server is found and its model measured."""
    import shutil

    study = optuna.create_study(study_name="hpo_tiny", storage=pg_url, direction="maximize")
    study.set_user_attr("created_at", "2024-01-02T03:04:05")
    study.enqueue_trial({"learning_rate": 0.002})
    study.optimize(lambda t: 0.0 * t.suggest_float("learning_rate", 1e-3, 3e-3) + 0.61,
                   n_trials=1)
    kept = project.output_dir / "tiny" / "models" / "hpo_tiny-20240102-030405" / "trial_0"
    shutil.copytree(tiny_model, kept)
    env = _env()
    flags = ["--storage-url", pg_url] if how == "--storage-url" else []
    if how == "HPO_STORAGE_URL":
        env["HPO_STORAGE_URL"] = pg_url
    res = _cli(project, "select", "--config", str(project.hpo), "--output-dir",
               str(project.output_dir), "--seconds", "0.2", *flags, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "selected: tiny (study hpo_tiny, trial 0)" in res.stdout
    chosen = json.loads((project.output_dir / "selection.json").read_text())
    assert chosen["candidates"][0]["infer_tokens_per_s"] > 0  # its kept model was found
    assert PASSWORD not in res.stdout + res.stderr
    assert optuna.get_all_study_names(pg_url) == ["hpo_tiny"]


def test_env_references_expand_only_in_urls_and_paths(project, tmp_path, monkeypatch) -> None:
    """Item 16: ``${VAR}`` in any config value read any environment variable. Only the keys of
    ``ENV_EXPANDED_KEYS`` (URLs, credentials' locations, paths) expand; elsewhere it stays."""
    from hpo_helpers.core.errors import ConfigError
    from hpo_helpers.settings.config import load_data_config, load_hpo_config

    monkeypatch.setenv("HPO_T_SECRET", "AZSECRETVALUE123")
    monkeypatch.setenv("HPO_T_DATA", str(tmp_path / "data-dir"))
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump({"path": "${HPO_T_DATA}", "test": "${HPO_T_DATA}/t.json",
                                 "label_map": {"Skills": "${HPO_T_SECRET}"},
                                 "drop_labels": ["${HPO_T_SECRET}"]}))
    data = load_data_config(f)
    assert data.path == str(tmp_path / "data-dir")
    assert data.test == str(tmp_path / "data-dir" / "t.json")
    assert data.label_map["Skills"] == "${HPO_T_SECRET}"
    assert data.drop_labels == ("${HPO_T_SECRET}",)
    h = tmp_path / "h.yaml"
    h.write_text(yaml.safe_dump(dict(TINY_HPO, backbone="${HPO_T_SECRET}",
                                     storage_url="postgresql+psycopg://u:${HPO_T_SECRET}@h/d")))
    with pytest.raises(ConfigError, match=r"'backbone': backbone name '\$\{HPO_T_SECRET\}'") \
            as exc:
        load_hpo_config(h)
    assert "AZSECRETVALUE123" not in str(exc.value)
    from hpo_helpers.settings.config import ENV_EXPANDED_KEYS

    assert "storage_url" in ENV_EXPANDED_KEYS and "study_name" not in ENV_EXPANDED_KEYS


def test_a_secret_named_in_a_config_is_never_printed(project, tmp_path) -> None:
    """Item 16: ``study_name: ${AZURE_CLIENT_SECRET}`` printed "No study AZSECRETVALUE123
    at ...". It is not expanded there; and a value taken from the environment where it is
    expanded (a data path) is masked in what is printed."""
    env = dict(_env(), AZURE_CLIENT_SECRET="AZSECRETVALUE123",
               HPO_T_DATA=str(tmp_path / "Zq9PRIVATEDIR"))
    project.write_hpo(study_name="${AZURE_CLIENT_SECRET}")
    res = _cli(project, "status", "--config", str(project.hpo), "--output-dir",
               str(project.output_dir), env=env)
    assert "AZSECRETVALUE123" not in res.stdout + res.stderr
    _one_line_error(res, r"study name '\$\{AZURE_CLIENT_SECRET\}' cannot be used in a path")
    project.write_hpo()
    data = project.config_dir / "data" / "test.yaml"
    data.write_text(data.read_text().replace(f"path: {project.dataset}", "path: ${HPO_T_DATA}"))
    assert "${HPO_T_DATA}" in data.read_text()
    res = _cli(project, *project.run_args()[3:], env=env)
    assert "Zq9PRIVATEDIR" not in res.stdout + res.stderr
    _one_line_error(res, r"\*\*\*")
