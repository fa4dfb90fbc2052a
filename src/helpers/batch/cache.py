"""Cache keys: what a run depends on (notebook, parameters, its data, the rules, the code, the
environment), the environment fingerprint, the dataset fingerprint and the code version."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..config import PROJECT_ROOT
from ..reports import get_report


#: packages whose version is part of every run's cache key and of the manifest
KEY_PACKAGES = ("pandas", "numpy", "pyarrow", "duckdb", "matplotlib", "seaborn", "scipy", "papermill",
                "nbclient", "nbconvert", "nbformat", "ipykernel", "jupyter_client", "playwright", "itables",
                "spiegel")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def environment_fingerprint() -> dict:
    """Python and the versions of the packages a report's look depends on.

    >>> sorted(environment_fingerprint()["packages"]) == sorted(KEY_PACKAGES)
    True
    """
    from importlib.metadata import PackageNotFoundError, version
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"python": sys.version.split()[0], "platform": sys.platform, "packages": packages}


def key_params(report_id: str, params: dict) -> dict:
    """The parameters that enter the cache key: paths are left out (their content is the
    data hash), so moving the warehouse does not rebuild everything.

    >>> key_params("his_analyse", {"quarter": "2026Q3", "warehouse": "/data/w.duckdb", "practice_agb": "01000001"})
    {'practice_agb': '01000001', 'quarter': '2026Q3'}
    """
    spec = get_report(report_id)
    types = {p.name: p.type for p in spec.params}
    return {k: v for k, v in sorted(params.items()) if types.get(k) != "path"}


def run_cache_key(*, notebook_hash: str, params: dict, data_hash: str, parameters_hash: str,
                  code_hash: str, environment: dict, formats: list[str] | tuple = ()) -> str:
    """What a run depends on, as one hash.

    >>> a = run_cache_key(notebook_hash="n", params={"practice_agb": "01000001"}, data_hash="d",
    ...                   parameters_hash="p", code_hash="c", environment={"python": "3.11"})
    >>> a == run_cache_key(notebook_hash="n", params={"practice_agb": "01000002"}, data_hash="d",
    ...                    parameters_hash="p", code_hash="c", environment={"python": "3.11"})
    False
    """
    payload = {"notebook": notebook_hash, "params": params, "data": data_hash,
               "parameters": parameters_hash, "code": code_hash, "environment": environment,
               "formats": sorted(formats)}
    return _sha(json.dumps(payload, sort_keys=True, default=str))


def region_data_hash(region: str, practice_regions: dict[str, str], hashes: dict[str, str]) -> str:
    """The data of every practice in the region (a change in any of them reruns the region).

    >>> regions = {"01000001": "Noord", "01000002": "Noord", "01000003": "Zuid"}
    >>> a = region_data_hash("Noord", regions, {"01000001": "h1", "01000002": "h2", "01000003": "h3"})
    >>> a == region_data_hash("Noord", regions, {"01000001": "h1", "01000002": "h2", "01000003": "other"})
    True
    """
    members = sorted((agb, hashes.get(agb, "")) for agb, r in practice_regions.items() if r == region)
    return _sha(json.dumps(members))


def code_version(code_hash: str) -> str:
    """``git describe`` of the project when it is a repository with commits, else the
    package version; always with the helpers' code hash.

    >>> code_version("0123456789abcdef").endswith("(code 0123456789ab)")
    True
    """
    import subprocess
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=5)
        described = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        described = ""
    base = f"git {described}" if described else f"spiegel {__version__}"
    return f"{base} (code {code_hash[:12]})"


def dataset_fingerprint(dataset: Path) -> str:
    """Names, sizes and modification times of every file: cheap, and any edit changes it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     before = dataset_fingerprint(Path(d))
    ...     _ = (Path(d) / "practices.csv").write_text("practice_agb\\n")
    ...     before == dataset_fingerprint(Path(d))
    False
    """
    items = []
    for root, dirs, files in os.walk(dataset):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            try:
                st = p.stat()
                items.append((str(p.relative_to(dataset)), st.st_size, st.st_mtime_ns))
            except OSError:  # a broken link or unreadable file: ingest reports it per practice
                items.append((str(p.relative_to(dataset)), -1, -1))
    return _sha(json.dumps(items))
