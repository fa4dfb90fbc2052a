"""PREPARE once per quarter over all practices: the quarter cube.

``prepare.prepare_quarter`` builds the population and per-patient state (``population``),
the registration findings and controls due (``findings``), the quality indicators
(``indicators``) and data quality (``quality``) for every practice of the warehouse in one
set-based SQL pass, and writes them as parquet beside the warehouse; ``read.read_slice``
gives a practice report the slice it may see; ``shared.SharedCube`` / ``read_shared`` give a
report of a shared scope (hagro, region, care group) the suppressed aggregates of
``<cube>/shared/`` and nothing else. The cube holds patient-level rows: it stays in ``data/``.
"""

from .prepare import code_hash, cube_key, parameters_hash, prepare_quarter, read_meta
from .read import CUBE_TABLES, read_slice
from .shared import SharedCube, SharedReadError, read_shared

__all__ = ["CUBE_TABLES", "SharedCube", "SharedReadError", "code_hash", "cube_key", "parameters_hash",
           "prepare_quarter", "read_meta", "read_shared", "read_slice"]
