"""`spiegel build` with the benchmark's small notebook registered as report ``bench_small``."""

import sys
from pathlib import Path

from helpers.reports import COMMON, REPORTS, Param, ReportSpec

REPORTS["bench_small"] = ReportSpec(
    id="bench_small", title_nl="Kleine benchmark", notebook=Path(__file__).resolve().parent / "small.ipynb",
    scope="practice", params=(Param("practice_agb", "practice"), *COMMON), formats=("html", "pdf"))

if __name__ == "__main__":
    from helpers.batch import main
    sys.exit(main(sys.argv[1:]))
