"""papermill for the notebook tests, with a time limit and one retry.

A notebook run in a lab-like kernel (widgets, ``JPY_SESSION_NAME`` set) once waited forever
in CI: the kernel idle, nbclient still waiting for a message of the last cell (a lost
message between the two, not our code: the same notebook ran in the run before). Without a
limit that hangs the whole suite; with one it fails the test, and one retry tells a lost
message from a notebook that really does not finish."""

from __future__ import annotations

import papermill as pm

#: seconds per cell; the slowest report cell takes a few seconds on the demo
CELL_TIMEOUT = 180


def execute_notebook(*args, **kwargs):
    kwargs.setdefault("execution_timeout", CELL_TIMEOUT)
    try:
        return pm.execute_notebook(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - only a timeout is retried
        if "timeout" not in f"{type(exc).__name__} {exc}".lower():
            raise
        return pm.execute_notebook(*args, **kwargs)
