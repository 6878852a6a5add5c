"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE of both launcher images): runs the
pipeline named by PAYMENTS_PIPELINE (set in the image) with the template's parameters.

The launcher only builds the job graph and exits; Dataflow then starts the job. The key is not
read here: --pseudonym_key_secret names a Secret Manager version the workers read themselves.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence

PIPELINE_ENV = "PAYMENTS_PIPELINE"
PIPELINES = ("batch", "streaming")


def launch(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the configured pipeline's main(argv); its exit status."""
    pipeline = environ.get(PIPELINE_ENV, "")
    if pipeline not in PIPELINES:
        raise SystemExit(f"error: {PIPELINE_ENV} must be one of {PIPELINES}, got {pipeline!r}")
    module = importlib.import_module(f"pipelines.{pipeline}")
    status: int = module.main(list(argv))
    return status


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:], os.environ))
