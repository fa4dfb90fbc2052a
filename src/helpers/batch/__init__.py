"""THE BATCH: ``spiegel build``, a batch file -> every report for every practice and quarter.

``batchfile`` parses and checks the batch file and the flags; ``plan`` selects practices,
regions and quarters and names the runs with their paths; ``cache`` computes what a run
depends on; ``steps`` ingests and prepares in a worker; ``manifest`` records every run;
``console`` prints progress and the summary; ``build`` is the recipe and the command.
"""

from .batchfile import BATCH_KEYS, DEFAULT_TIMEOUT, EXECUTORS, FORMATS, Batch, load_batch, load_batch_file, parse_batch
from .build import add_build_arguments, main, run_build, sigterm_as_interrupt
from .cache import (KEY_PACKAGES, code_version, dataset_fingerprint, environment_fingerprint, key_params,
                    region_data_hash, run_cache_key)
from .console import Progress, error_lines, interrupt_message, print_summary
from .manifest import Manifest, discard_unrecorded
from .plan import (notebook_imports, plan_runs, resolve_selection, run_dir, run_name, slug, stale_data,
                   stale_line, stale_of)

__all__ = ["BATCH_KEYS", "DEFAULT_TIMEOUT", "EXECUTORS", "FORMATS", "KEY_PACKAGES", "Batch", "Manifest", "Progress",
           "add_build_arguments", "code_version", "dataset_fingerprint", "discard_unrecorded",
           "environment_fingerprint", "error_lines", "interrupt_message", "key_params", "load_batch",
           "load_batch_file", "main", "notebook_imports", "parse_batch", "plan_runs", "print_summary",
           "region_data_hash", "resolve_selection", "run_build", "run_cache_key", "run_dir", "run_name",
           "sigterm_as_interrupt", "slug", "stale_data", "stale_line", "stale_of"]
