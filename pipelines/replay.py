"""`python -m pipelines.replay`, the name the streaming replay had before it moved to `tools/` (it
is not a Beam pipeline): kept so that existing scripts and schedules still run. The command is
`python -m tools.replay`."""

import sys

from tools.replay import main

if __name__ == "__main__":
    sys.exit(main())
