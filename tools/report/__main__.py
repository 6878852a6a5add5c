"""`python -m tools.report`: write report.en.html, report.ar.html and figures.json."""

import sys

from tools.report.command import main

if __name__ == "__main__":
    sys.exit(main())
