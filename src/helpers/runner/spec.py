"""What a run is and what comes of it: plain data pickled between the coordinator and the
workers (``RunSpec`` in, ``RunResult`` out), the failure of one stage (``RunFailure``), and
how a write error (disk full, read-only) becomes that run's failure.

>>> failure = write_failure(OSError(28, "No space left on device", "outputs/r.html"))
>>> failure.info["stage"], failure.info["message"]
('write', 'disk full at outputs/r.html: free space on that disk and run the build again')
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["OUTPUT_SUFFIXES", "output_name", "RunSpec", "RunResult", "RunFailure", "file_record", "WRITE_ERRORS", "is_write_error",
           "write_failure", "first_line", "now_iso"]


#: the file name ending of each output (``<report><suffix>``); the deck sits beside the HTML
OUTPUT_SUFFIXES = {"ipynb": ".ipynb", "html": ".html", "pdf": ".pdf", "slides": ".slides.html"}


def output_name(report_id: str, fmt: str) -> str:
    """The file name of one output of a run.

    >>> output_name("his_analyse", "slides"), output_name("his_analyse", "pdf")
    ('his_analyse.slides.html', 'his_analyse.pdf')
    """
    return f"{report_id}{OUTPUT_SUFFIXES[fmt]}"


@dataclass
class RunSpec:
    """One named run: a notebook with its parameters and where every output goes. The batch's
    planner (``helpers.batch.plan``) makes them; a worker runs them (``WorkerState.run``)."""

    name: str                    # e.g. "12345678-his_analyse" (unique within a quarter)
    quarter: str
    report: str
    scope: str                   # "practice" or "region"
    key: str                     # practice AGB or region name
    label: str                   # practice name / "Regio <name>"
    notebook: str
    params: dict
    formats: list[str]           # subset of html, pdf, slides (the .ipynb is always written)
    outdir: str
    files: dict                  # fmt -> final path ("ipynb", "html", "pdf", "slides": output_name)
    partial_path: str            # where a failed run's partial notebook goes
    log_path: str
    cube_path: str
    cache_key: str
    timeout: float
    title: str
    provenance: dict = field(default_factory=dict)
    subtitle: str = ""
    pre_failed: dict | None = None   # set by the batch when the run cannot start (e.g. refused extraction)
    # the notebook was executed before (``files["ipynb"]``, same cache key) and only a format
    # failed (e.g. no browser): render HTML, extras and PDF from it without executing again
    render_only: bool = False
    # the batch commits the run's files itself (``Staging.hand_over``): set by the build
    commit_by_build: bool = False

    @property
    def uid(self) -> str:
        """The run's identity within a batch: ``<quarter>/<name>`` (its ``name`` is unique
        within a quarter only; the manifest of each quarter is keyed by the name)."""
        return f"{self.quarter}/{self.name}"


@dataclass
class RunResult:
    """What one run produced: status, stage timings, the files written (path, sha256, bytes),
    the portal's key figures, and the error of the stage that failed (``RunFailure.info``).

    >>> RunResult(name="01000001-his_analyse").to_dict()["status"]
    'failed'
    """

    name: str
    status: str = "failed"       # "done" or "failed"
    uid: str = ""                # the spec's ``uid`` (a name repeats across the quarters of a batch)
    timings: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)     # fmt -> {"path", "sha256", "bytes"}
    extras: list = field(default_factory=list)      # [{"path", "sha256", "bytes"}]
    figures: dict = field(default_factory=dict)
    error: dict | None = None
    partial_notebook: str | None = None
    attempts: int = 1            # kernel starts and resubmissions after a worker crash
    # per requested format (ipynb, html and ``spec.formats``): written or not; a run whose
    # notebook and HTML were written but whose PDF failed has status "failed", error stage
    # "pdf" and {"ipynb": True, "html": True, "pdf": False}
    outputs_done: dict = field(default_factory=dict)
    worker: str = ""
    memory_mb: dict = field(default_factory=dict)
    finished_at: str = ""
    # the files a worker handed over for the build to commit: [kind, temporary, final, record]
    staged: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The result as plain data (for the manifest)."""
        return asdict(self)


class RunFailure(Exception):
    """A run failed in one stage; ``info`` is what the summary and manifest show. The message
    is scrubbed of data values (``helpers.suppression.scrub_message``): it travels to the
    manifest, the portal and the batch logs.

    >>> RunFailure("pdf", "no browser found").info
    {'stage': 'pdf', 'message': 'no browser found'}
    """

    def __init__(self, stage: str, message: str, **info):
        from ..suppression import scrub_message
        message = scrub_message(message)
        super().__init__(message)
        self.info = {"stage": stage, "message": message, **info}


#: what an OSError while writing means to the person who runs the build
WRITE_ERRORS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
    errno.EIO: "input/output error", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
}


def is_write_error(exc: BaseException) -> bool:
    """True for an OSError that means the outputs cannot be written (``WRITE_ERRORS``)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRORS


def write_failure(exc: OSError, fallback_path: object = "") -> RunFailure:
    """A run's failure for a write error: ``disk full at <path>`` and what to do."""
    path = exc.filename or fallback_path
    what = WRITE_ERRORS.get(exc.errno, exc.strerror or "write error")
    fix = ("free space on that disk and run the build again" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "make that folder writable and run the build again")
    return RunFailure("write", f"{what} at {path}: {fix}", path=str(path))


def file_record(path: Path | str) -> dict:
    """``{"path", "sha256", "bytes"}`` of a written file, as the manifest keeps it.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "a.txt"; _ = f.write_text("x")
    >>> file_record(f)["sha256"][:12], file_record(f)["bytes"]
    ('2d711642b726', 1)
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": str(path), "sha256": h.hexdigest(), "bytes": Path(path).stat().st_size}


def first_line(text: object, limit: int = 200) -> str:
    """The first non-empty line of ``text``, cut at ``limit`` characters (for one-line errors).

    >>> first_line("\\n  KeyError: 'x'\\n  more")
    "KeyError: 'x'"
    """
    lines = [s for s in str(text).strip().splitlines() if s.strip()]
    line = lines[0].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def now_iso() -> str:
    """Local time with its offset, to the second (a run's ``finished_at``)."""
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
