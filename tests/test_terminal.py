"""The CLI on a real terminal (a pty): log lines above the bars, never through them (issue 14)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import termios

import pytest

from .conftest import REPO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.slow
def test_log_lines_do_not_break_the_progress_bars(project) -> None:
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (30, 120))  # a fresh pty is 0x0: tqdm would draw nothing
    proc = subprocess.Popen([*project.run_args("--max-trials", "2")], stdout=slave,
                            stderr=slave, stdin=subprocess.DEVNULL, close_fds=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0
    os.close(master)
    # The terminal turns "\n" into "\r\n"; a lone "\r" is tqdm redrawing a row.
    out = _ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r\n", "\n")
    assert "trials:" in out and "trial 0:" in out, out[-2000:]  # both bars were drawn
    log_lines = [line for line in out.split("\n") if " INFO hpo_helpers." in line]
    assert log_lines
    for line in log_lines:
        visible = line.split("\r")[-1].strip()  # what the terminal shows on that row
        assert re.match(r"^\d\d:\d\d:\d\d INFO hpo_helpers\.", visible), repr(line)
    # The checkpoint's full path is said once per trial, then only its name.
    full = [line for line in log_lines if "Checkpoint saved: /" in line]
    short = [line for line in log_lines if "Checkpoint saved: checkpoint-" in line]
    assert 1 <= len(full) <= 2 and short, (full, short)
