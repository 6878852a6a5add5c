"""List the data files a reader should trust: those of committed runs (see
transforms/committed.py), one per line, for DuckDB, pyarrow or a BigQuery load job.

    python -m pipelines.committed --output OUT [--dataset payments|rejected|aggregates]

For example, in DuckDB:

    SELECT * FROM read_parquet([...the listed files...], hive_partitioning = true)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from transforms.committed import DATASETS, committed_files, committed_runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.committed",
        description="Print the data files of committed runs (a run killed while publishing "
        "leaves files no manifest lists; they are left out).",
    )
    parser.add_argument("--output", required=True, help="the pipelines' output root")
    parser.add_argument("--dataset", default="payments", choices=DATASETS)
    args = parser.parse_args(argv)
    files = committed_files(args.output, args.dataset)
    for path in files:
        print(path)
    runs = len(committed_runs(args.output.rstrip("/")))
    print(
        f"{len(files)} committed {args.dataset} files from {runs} committed runs", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
