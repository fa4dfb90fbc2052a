"""``python -m helpers.runner _zygote <socket> <preload json> <parent pid>`` runs a kernel
factory; ``python -m helpers.runner _launch <socket> <connection file> [--pidfile P]
[--parent PID] [--wait S] ...`` stands in for a forked kernel. Both are internal: the
runner starts them (``kernels.KernelFactory``). The launcher starts per kernel, so nothing
here (nor in the package it imports) may import more than the standard library.
"""

import json
import sys

from .kernels import launcher_main, zygote_main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_zygote":
        zygote_main(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_launch":
        sys.exit(launcher_main(sys.argv[2:]))
    else:
        sys.exit("usage: python -m helpers.runner _zygote|_launch ... (internal)")
