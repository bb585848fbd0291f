"""Write a benchmark's figures into benchmarks/RESULTS.md (one section per script and case).

Sections are replaced, never typed by hand: each holds the date, the machine, the command and
the JSON the script printed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = ("# Benchmark results\n\nWritten by the scripts in this folder (`--results`), never by "
          "hand. Each section: date, machine, command, the JSON line the script printed.\n")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        import torch

        if torch.cuda.is_available():
            cpu += f", GPU {torch.cuda.get_device_name(0)}"
        torch_v = f", torch {torch.__version__}"
    except ImportError:
        torch_v = ""
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
            f"Python {platform.python_version()}{torch_v}")


def record(section: str, payload: dict, notes: str = "", path: Path = RESULTS) -> None:
    """Replace ``## section`` in RESULTS.md with this run's figures."""
    text = path.read_text() if path.exists() else HEADER
    command = "python " + " ".join([Path(sys.argv[0]).as_posix().split("/main/")[-1],
                                     *sys.argv[1:]])
    body = (f"## {section}\n\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {machine()}\n- command: `{command}`\n"
            + (f"- notes: {notes}\n" if notes else "")
            + f"\n```json\n{json.dumps(payload, indent=1, sort_keys=True)}\n```\n")
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    # python benchmarks/_results.py pending SECTION REASON: mark figures still to be measured
    if len(sys.argv) == 4 and sys.argv[1] == "pending":
        record(sys.argv[2], {"status": "still to be measured", "reason": sys.argv[3],
                             "how": "bash benchmarks/gpu_check.sh on a CUDA machine"})
    else:
        raise SystemExit("usage: python benchmarks/_results.py pending SECTION REASON")
