"""The streaming payments writer's time per pane at a high rate: `--panes` panes of `--rows`
portal payments each into one partition, in-process (deferred-ack mode), one after another.

    .venv/bin/python benchmarks/pane_cost.py --rows 20000 --panes 20
    .venv/bin/python benchmarks/pane_cost.py --code /path/to/an/older/checkout   # A/B

At 2,000 events/s and a pane every 10 s (benchmarks/streaming.py) a pane holds ~20,000 rows:
this is what a pane costs the writer there (its rewrite of the open file included), without
Pub/Sub, Beam or the other steps around it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--panes", type=int, default=20)
    parser.add_argument("--code", default=str(HERE.parent), help="the checkout to measure")
    args = parser.parse_args(argv)
    sys.path[:0] = [args.code, str(HERE)]
    from streaming import payment

    from schemas.catalogue import load_catalogue
    from schemas.run import STREAMING, Run, new_run_id
    from transforms.core.blocks import RunContext, process_block
    from transforms.core.columnar import ArrowBlock
    from transforms.core.normalise import Normaliser
    from transforms.core.privacy import Pseudonymiser
    from transforms.core.rawblock import RawBlock
    from transforms.streaming import sinks

    ctx = RunContext(Normaliser(Pseudonymiser(b"k" * 32), load_catalogue()), "bench", 0)
    now = datetime.now(timezone.utc)
    out = Path(tempfile.mkdtemp(prefix="pane-cost-"))
    writer = sinks.WritePartitionPaneFn(Run(new_run_id(now), STREAMING, str(out), now, "", ()))
    times = []
    for pane in range(args.panes):
        numbers = range(pane * args.rows, (pane + 1) * args.rows)
        lines = [payment(n * 10, now) for n in numbers]  # portal payments only
        ids = [str(n) for n in numbers]
        table = process_block(RawBlock("s", lines, message_ids=ids), ctx).accepted
        key = ("portal", table["event_date"][0].as_py().isoformat())
        began = time.perf_counter()
        for _ in writer.process((key, [ArrowBlock.of(table)])):
            pass
        times.append(time.perf_counter() - began)
    files = list(out.glob("payments/*/*/*.parquet"))
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(
        f"{sinks.__file__}: {args.panes} panes of {args.rows:,} rows: median "
        f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms, total "
        f"{sum(times):.1f} s; {len(files)} files, {megabytes:.1f} MB"
    )
    shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
