"""Statistics of resume datasets: length, entity density, share of O words, entities per type.

Reads any dataset the project reads (a folder of train/validation/test files, or one file; our
JSON, DataTurks JSON/JSONL, CoNLL), through the same readers and label settings as a run, and
pools its documents. Words are the project's words (a punctuation mark is a word).

    python benchmarks/data_stats.py                              # the bundled dataset/
    python benchmarks/data_stats.py path/to/folder other.jsonl --markdown --reference
    python benchmarks/data_stats.py dataset --data-config config/data/demo.yaml --json

Prints one table (``--markdown``: a Markdown table, ``--reference``: with a column of the real
resume set issue 21 measured) or, with ``--json``, one JSON line per dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _project import REPO  # noqa: E402

from hpo_helpers.data.dataset import read_file, split_files  # noqa: E402
from hpo_helpers.data.stats import REAL_RESUMES, dataset_stats, stats_table  # noqa: E402
from hpo_helpers.settings.config import load_data_config  # noqa: E402


def documents(path: Path, data_config: Path) -> list:
    """Every document of ``path`` (a folder's split files, or one file), read as a run would."""
    cfg = load_data_config(data_config)
    files = split_files(path) if path.is_dir() else {"train": path}
    docs = []
    for f in files.values():
        docs.extend(read_file(f, cfg)[0])
    return docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=[str(REPO / "dataset")],
                    help="dataset folders or files (default: the bundled dataset/)")
    ap.add_argument("--data-config", default=str(REPO / "config" / "data" / "demo.yaml"),
                    help="label settings to read them with (default: config/data/demo.yaml)")
    ap.add_argument("--json", action="store_true", help="one JSON line per dataset")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table")
    ap.add_argument("--reference", action="store_true",
                    help="add a column: the real resume set measured in issue 21")
    args = ap.parse_args()
    columns = {}
    for raw in args.paths:
        path = Path(raw)
        stats = dataset_stats(documents(path, Path(args.data_config)))
        columns[path.name or str(path)] = stats
        if args.json:
            print(json.dumps({"path": str(path), **stats}))
    if args.json:
        return 0
    if args.reference:
        columns["real resumes (issue 21)"] = REAL_RESUMES
    table = stats_table(columns)
    print(table if args.markdown else table.replace("|---", "|   "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
