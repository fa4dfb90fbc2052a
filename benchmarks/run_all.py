"""Every benchmark in this folder (``make bench``): bench_build first, then the others.

Each prints its own table of seconds and ratios; nothing is asserted. Extra arguments go
to bench_build (e.g. ``--practices 3`` for a quick look).
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda p: (p.name != "bench_build.py", p.name))
    status = 0
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        args = argv if script.name == "bench_build.py" else []
        status |= subprocess.run([sys.executable, str(script), *args]).returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
