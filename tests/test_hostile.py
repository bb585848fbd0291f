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
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from hpo_helpers.redaction import MaskingFilter, mask, register_secret, register_url_secret

from .conftest import PYTHON, REPO, TINY_HPO
from .test_distributed import pg_url  # noqa: F401 - a fixture used below
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
    from hpo_helpers.tracking import _storage_type

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
    from hpo_helpers.config import load_data_config

    raw = yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())
    raw.update(extra)
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(raw))
    return load_data_config(f)


def test_oversized_documents_are_dropped_and_counted(tmp_path, caplog) -> None:
    from hpo_helpers.data import read_file

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
    from hpo_helpers.data import read_file
    from hpo_helpers.errors import DataError

    cfg = _data_cfg(tmp_path, max_document_chars=50)
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError, match=r"all 1 documents are longer than max_document_chars "
                                        r"= 50 characters.*Fix: raise max_document_chars"):
        read_file(f, cfg)


def test_default_limit_keeps_old_fingerprints_and_a_new_limit_changes_it(tmp_path) -> None:
    from hpo_helpers.data import load_dataset

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
        from hpo_helpers.config import load_data_config
        from hpo_helpers.data import load_dataset
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
    from hpo_helpers.snapshot import check_database, enable_wal

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

    from hpo_helpers.backbones import _tiny_tokenizer

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
    from hpo_helpers.study import StudyLock

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
    from hpo_helpers.study import reader_storage
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
    from hpo_helpers.config import load_hpo_config
    from hpo_helpers.paths import resolve
    from hpo_helpers.runtime import Runtime
    from hpo_helpers.study import open_study

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
    from hpo_helpers.cli import _parser, resume_command

    args = _parser().parse_args([
        "run", "--config", "c/h p.yaml", "--backbone", "tiny", "--output-dir", "o ut",
        "--dataset", "d/x.json", "--max-trials", "7", "--mlflow-experiment", "exp",
        "--tracking-uri", "https://u:pa/ss@mlflow.example/x", "--storage-url",
        "postgresql+psycopg://u:pa/ss@h/d", "--config-dir", "c"])
    cmd = resume_command(args)
    assert "pa/ss" not in cmd
    monkeypatch.setenv("HPO_STORAGE_URL", "postgresql+psycopg://u:pa/ss@h/d")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://u:pa/ss@mlflow.example/x")
    argv = shlex.split(os.path.expandvars(cmd))
    assert argv[:4] == ["python", "-m", "hpo_helpers", "run"]
    again = _parser().parse_args(argv[3:])
    for key in ("config", "backbone", "output_dir", "dataset", "max_trials",
                "mlflow_experiment", "tracking_uri", "storage_url", "config_dir"):
        assert getattr(again, key) == getattr(args, key), key


@pytest.mark.slow
def test_the_printed_command_resumes_the_interrupted_run(project, tmp_path) -> None:
    import re

    data = tmp_path / "other-data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.json").write_text((REPO / "dataset" / f"{split}.json").read_text())
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
        assert b"hpo_helpers.dashboard" in ps
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
    from hpo_helpers.dashboard import start_dashboard

    pytest.importorskip("optuna_dashboard")
    db = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    secret = "hunter2/" + uuid.uuid4().hex[:6]
    fake = f"sqlite:///{db}?password={secret}"  # a URL whose query holds a secret
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        dash = start_dashboard(fake)
    try:
        args = Path(f"/proc/{dash.process.pid}/cmdline").read_bytes()
        assert b"hpo_helpers.dashboard" in args
        assert secret.encode() not in args and b"study.db" not in args
    finally:
        dash.stop()
    assert secret not in caplog.text


# ---------------------------------------------------------------------------------------------
# Hostile names (findings 1 and 10): refused in one line, nothing written outside the output
# folder, no unrelated folder touched


@pytest.mark.parametrize("name", ["/elsewhere/victim", "../../../victim", "../victim",
                                  ".hidden", "a/b", "x" * 101, "tab\tname"])
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
    from hpo_helpers.backbones import load_backbone
    from hpo_helpers.config import load_data_config, load_train_config
    from hpo_helpers.data import load_dataset
    from hpo_helpers.encoding import encode_documents

    from .test_train import _demo_data

    tmp = tmp_path_factory.mktemp("hostile-train")
    ds = load_dataset(REPO / "dataset", load_data_config(
        {**_demo_data(), "max_train_documents": 12, "max_eval_documents": 5}))
    bb = load_backbone("tiny", REPO / "config", texts=[" ".join(d.words) for d in ds.train],
                       cache_dir=tmp / "tok")
    l2i = {lab: i for i, lab in enumerate(ds.labels)}
    return {"ds": ds, "bb": bb,
            "cfg": load_train_config({"max_length": 64, "stride": 16, "torch_threads": 1}),
            "tw": encode_documents(ds.train, bb.tokenizer, l2i, max_length=64, stride=16),
            "ew": encode_documents(ds.validation, bb.tokenizer, l2i, max_length=64, stride=16)}


def _fit(trained, trial_dir: Path, **kw):
    from hpo_helpers.train import fit

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
    from hpo_helpers.checkpoints import latest_checkpoint

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

    from hpo_helpers.checkpoints import latest_checkpoint

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
    from hpo_helpers.checkpoints import latest_checkpoint, read_state

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

    from hpo_helpers import load_configs, run_sweep, sweep
    from hpo_helpers.errors import CheckpointError, SweepFailedError

    def damaged_fit(*, checkpoint_dir, **_kw):
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (checkpoint_dir / "evidence.txt").write_text("look at me")
        raise CheckpointError(f"checkpoint {checkpoint_dir} does not fit this trial's model")

    monkeypatch.setattr(sweep, "fit", damaged_fit)
    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    with pytest.raises(SweepFailedError, match="3 trials failed in a row"):
        run_sweep(cfg, output_dir=project.output_dir)
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
    from hpo_helpers.status import status

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

    from hpo_helpers.checkpoints import latest_checkpoint
    from hpo_helpers.layout import StudyLayout
    from hpo_helpers.mirror import CheckpointMirror

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
