"""Rows added to the tables of benchmarks/RESULTS.md, each under its own header: the file
holds the batch table and the streaming table, one after the other, so a row appended at the
end of the file would land in the wrong one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def add_rows(path: Path, header: str, rows: Sequence[str]) -> None:
    """Insert `rows` at the end of the table whose header line starts with `header` (a new
    table at the end of the file if there is none)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    if not starts:
        raise ValueError(f"{path} has no table whose header starts with {header!r}")
    end = starts[0] + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[end:end] = [row.rstrip("\n") for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
