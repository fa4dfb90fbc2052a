"""Every path the project uses, built once from the project root, and the environment read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ParameterError

PACKAGE_DIR = Path(__file__).resolve().parent


def _find_root() -> Path:
    env = os.environ.get("SPIEGEL_ROOT")
    if env:
        return Path(env).resolve()
    # src/helpers/ -> project root (editable install or a checkout)
    candidate = PACKAGE_DIR.parent.parent
    if (candidate / "parameters").is_dir():
        return candidate
    return Path.cwd().resolve()


PROJECT_ROOT = _find_root()
PARAMETERS_DIR = PROJECT_ROOT / "parameters"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
DEMO_DATASET = DATA_DIR / "demo"
DEFAULT_WAREHOUSE = DATA_DIR / "warehouse.duckdb"
CODES_FILE = PARAMETERS_DIR / "codes.yaml"
PROGRAMMES_FILE = PARAMETERS_DIR / "programmes.yaml"
CONTRACTS_FILE = PARAMETERS_DIR / "contracts.yaml"
INDICATORS_DIR = PARAMETERS_DIR / "indicators"


#: Seconds to wait for a warehouse that another process holds, unless SPIEGEL_LOCK_WAIT says otherwise.
DEFAULT_LOCK_WAIT = 30.0


@dataclass(frozen=True)
class Settings:
    """What the environment may change, read once (``Settings.from_env()``) and passed down."""

    warehouse: Path = DEFAULT_WAREHOUSE
    outputs: Path = OUTPUTS_DIR
    chromium: str | None = None
    lock_wait: float = DEFAULT_LOCK_WAIT

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            warehouse=Path(os.environ.get("SPIEGEL_WAREHOUSE", DEFAULT_WAREHOUSE)),
            outputs=Path(os.environ.get("SPIEGEL_OUTPUTS", OUTPUTS_DIR)),
            chromium=os.environ.get("SPIEGEL_CHROMIUM"),
            lock_wait=_seconds("SPIEGEL_LOCK_WAIT", DEFAULT_LOCK_WAIT),
        )


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ParameterError(f"{name}={text!r} is not a number of seconds: set it to e.g. 30, or 0 to fail at once")
    return value


def cube_dir(warehouse: Path, quarter: str) -> Path:
    """Where the prepared figures of one quarter live: beside the warehouse, never in outputs/."""
    return Path(warehouse).with_suffix("").parent / "cube" / str(quarter)
