"""The core ingestion transform, shared by the batch and the streaming pipeline.

RawBlocks in; accepted payments keyed by their Hive partition ((channel, ISO day) ->
ArrowBlock), rejected events (ArrowBlocks) and statistics out. It knows nothing of where
blocks come from or where results go: batch and streaming attach different sources and
sinks around it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas.catalogue import load_catalogue
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.outputs import Output
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.core.validate import DEFAULT_MAX_EVENT_BYTES
from transforms.dedup.table import split_by_partition
from transforms.storage.keys import PseudonymKey

log = logging.getLogger(__name__)
_PROGRESS_EVERY = 100_000


class IngestResult(NamedTuple):
    accepted: beam.PCollection
    rejected: beam.PCollection
    stats: beam.PCollection


class ValidateBlocksFn(beam.DoFn):  # type: ignore[misc]
    """RawBlock -> ((channel, day), accepted ArrowBlock) per partition (main); rejected
    ArrowBlock and stats (tagged). Splitting here, while the table is still decoded, saves
    every sink a decode and re-encode: batch and streaming both write per partition."""

    def __init__(
        self, pseudonym_key: PseudonymKey, run: Run, max_event_bytes: int, bulk: bool = True
    ) -> None:
        self._key = pseudonym_key  # a secret's or a file's name on Dataflow, not the key
        self._run = run
        self._max_event_bytes = max_event_bytes
        self._bulk = bulk
        self._ctx: RunContext | None = None
        self._seen = 0

    def setup(self) -> None:
        # What is loaded by now lives for the whole run: keep it out of every collection.
        gc.freeze()
        normaliser = Normaliser(Pseudonymiser(self._key.resolve()), load_catalogue())
        self._ctx = RunContext.of(self._run, normaliser, self._max_event_bytes, self._bulk)

    def process(self, block: RawBlock) -> Iterator[Any]:
        assert self._ctx is not None, "setup() not called"
        # A block allocates hundreds of thousands of short-lived objects with no reference
        # cycles (models, tuples, strings): the cyclic collector would scan them again and
        # again for nothing (15% of the time, measured). It runs between blocks instead.
        gc.disable()
        try:
            result = process_block(block, self._ctx)
        finally:
            gc.enable()
        accepted, rejected = result.accepted.num_rows, result.rejected.num_rows
        beam.metrics.Metrics.counter("ingest", "accepted_before_dedup").inc(accepted)
        beam.metrics.Metrics.counter("ingest", "rejected").inc(rejected)
        before = self._seen // _PROGRESS_EVERY
        self._seen += len(block.payloads)
        if self._seen // _PROGRESS_EVERY > before:
            log.info("validated %s events in this worker", f"{self._seen:,}")
        for key, rows in split_by_partition(result.accepted):
            yield key, ArrowBlock.of(rows)
        if rejected:
            yield pvalue.TaggedOutput(Output.REJECTED.value, ArrowBlock.of(result.rejected))
        cost = {st.PRIVACY_SCREENING_MICROS: round(result.privacy_seconds * 1e6)}
        yield pvalue.TaggedOutput(Output.STATS.value, {**result.stats, **cost})


class IngestEvents(beam.PTransform):  # type: ignore[misc]
    """Parse, validate and normalise blocks of raw events of every channel."""

    def __init__(
        self,
        pseudonym_key: PseudonymKey | bytes,
        run: Run,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        bulk: bool = True,
    ) -> None:
        super().__init__()
        key = (
            pseudonym_key
            if isinstance(pseudonym_key, PseudonymKey)
            else PseudonymKey(value=pseudonym_key)
        )
        if key.value is not None:
            Pseudonymiser(key.value)  # refuse a weak key at construction, not on a worker
        self._fn = ValidateBlocksFn(key, run, max_event_bytes, bulk)

    def expand(self, blocks: beam.PCollection) -> IngestResult:
        results = blocks | "ValidateAndNormalise" >> beam.ParDo(self._fn).with_outputs(
            Output.REJECTED.value, Output.STATS.value, main=Output.ACCEPTED.value
        )
        return IngestResult(
            results[Output.ACCEPTED.value],
            results[Output.REJECTED.value],
            results[Output.STATS.value],
        )


class MergeStats(beam.PTransform):  # type: ignore[misc]
    """PCollection of partial stats -> a single merged stats dict (empty input gives {})."""

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "SumStats" >> beam.CombineGlobally(st.merge)
