"""`python -m pipelines.committed`, the name the committed-files listing had before it moved to
`tools/` (it is not a Beam pipeline): kept so that existing scripts and schedules still run. The
command is `python -m tools.committed`."""

import sys

from tools.committed import main

if __name__ == "__main__":
    sys.exit(main())
