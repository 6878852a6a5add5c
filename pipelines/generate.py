"""`python -m pipelines.generate`, the name the raw-event generator had before it moved to `tools/`
(it is not a Beam pipeline): kept so that existing scripts and schedules still run. The command
is `python -m tools.generate`."""

import sys

from tools.generate import main

if __name__ == "__main__":
    sys.exit(main())
