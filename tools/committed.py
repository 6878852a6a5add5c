"""List the data files a reader should trust: those of committed runs (see
transforms/storage/committed.py), one per line, for DuckDB, pyarrow or a BigQuery load job.

    python -m tools.committed --output OUT [--dataset payments|rejected|aggregates]

For example, in DuckDB:

    SELECT * FROM read_parquet([...the listed files...], hive_partitioning = true)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pipelines import cli
from schemas import layout
from transforms.storage.committed import DATASETS, committed_files, committed_runs
from transforms.storage.files import list_tree

RUN_FIRST = (
    "run a pipeline into it first (python -m pipelines.batch --input 'LANDING/*/*.jsonl*' "
    "--output {root}, or pipelines.streaming), or check the path"
)


def refuse_if_no_output(root: str) -> None:
    """Refuse (exit 2, one line) an output root that holds no run of either pipeline: a
    missing or empty folder is a wrong path or a pipeline that has not run yet, not an
    output with nothing committed."""
    runs = layout.join(root, layout.RUNS)
    hint = RUN_FIRST.format(root=root)
    if "://" in root:
        if not list_tree(runs, "*"):
            cli.fail(f"--output {root} holds no pipeline run ({runs}/ is empty): {hint}")
        return
    if not os.path.exists(root):
        cli.fail(f"--output {root} does not exist: {hint}")
    if not os.path.isdir(root):
        cli.fail(f"--output {root} is a file, not a pipeline output folder")
    if not os.path.isdir(runs) or not os.listdir(runs):
        cli.fail(f"--output {root} holds no pipeline run ({runs}/ is missing or empty): {hint}")


def stop_writing_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not raise
    BrokenPipeError again (the Python documentation's recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m tools.committed",
        description="Print the data files of committed runs (a run killed while publishing "
        "leaves files no manifest lists; they are left out).",
        epilog=cli.exit_statuses(
            "when the files are listed (none, if no run has committed yet), or when the "
            "reader stops reading early (| head)",
        )
        + " A missing or empty output folder is refused with status 2.",
    )
    parser.add_argument("--output", required=True, help="the pipelines' output root")
    parser.add_argument("--dataset", default="payments", choices=DATASETS)
    args = parser.parse(argv)
    root = args.output.rstrip("/") or args.output
    if "://" not in root:
        refuse_if_no_output(root)  # cheap locally; on gs:// only when nothing is found
    files = committed_files(root, args.dataset)
    if not files and "://" in root:
        refuse_if_no_output(root)
    try:
        for path in files:
            print(path)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): it has what it wanted
        stop_writing_stdout()
        return 0
    runs = len(committed_runs(root))
    print(
        f"{len(files)} committed {args.dataset} files from {runs} committed runs", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
