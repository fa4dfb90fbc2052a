"""Bad-input datasets for the contract and warehouse tests: good_minimal with one case laid over it."""

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = FIXTURES / "good_minimal"
BAD = FIXTURES / "bad"


def build(tmp_path: Path, case: str | None = None, name: str = "dataset") -> Path:
    """good_minimal copied to tmp_path/name, with the bad case ``case`` laid over it (files
    copied in, and the paths listed in its REMOVE file deleted)."""
    ds = tmp_path / name
    shutil.copytree(GOOD, ds)
    if case:
        src = BAD / case
        for f in src.rglob("*"):
            if f.is_file() and f.name not in ("REMOVE", "README.md"):
                target = ds / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, target)
        remove = src / "REMOVE"
        if remove.exists():
            for rel in remove.read_text().split():
                p = ds / rel
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    return ds
