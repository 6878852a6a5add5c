"""`python -m pipelines.calibration`, the name the calibration check had before it moved to
`tools/` (it is not a Beam pipeline): kept so that existing scripts and schedules still run. The
command is `python -m tools.calibration`."""

import sys

from tools.calibration import main

if __name__ == "__main__":
    sys.exit(main())
