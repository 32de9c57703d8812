"""
Pack the homework sources into a zip to submit:

    python bundle.py homework YOUR_UT_ID

Only source and text files go in: no caches, notebooks, checkpoints, data or hidden files.
"""

import argparse
import os
import re
import sys
import zipfile
from pathlib import Path

from grader.parts import mb
from grader.submission import MAX_BYTES

# A UT EID is a few letters and digits; we also allow '-' and '_'. Starting with a letter or digit
# keeps it from looking like an option or a hidden file, and the character set keeps it a plain
# file name, so the zip always lands in the current folder.
UTID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,31}")
SOURCE_SUFFIXES = {".py", ".md", ".txt", ".json", ".yaml", ".yml"}


class BundleError(Exception):
    """Something the student can fix; the message says what, in one line."""


def bundle(homework_dir: Path, utid: str, force: bool = False) -> Path:
    """Write `<utid>.zip`, in the current folder, with the sources of `homework_dir`; return it."""
    homework_dir = Path(homework_dir).resolve()
    if not UTID.fullmatch(utid):
        raise BundleError(f"{utid!r} is not a valid UT ID: use 2 to 32 letters, digits, '-' or '_', starting with a letter or digit")
    if not homework_dir.exists():
        raise BundleError(f"{homework_dir} does not exist")
    if not homework_dir.is_dir():
        raise BundleError(f"{homework_dir} is not a folder")
    # Any case: on a case-insensitive file system (macOS, Windows) "Homework" is the same folder.
    if homework_dir.name.lower() != "homework" or not (homework_dir / "__init__.py").is_file():
        raise BundleError(f"{homework_dir} is not the homework package (homework/__init__.py)")
    out = Path(f"{utid}.zip")
    if out.exists() and not force:
        raise BundleError(f"{out} already exists; delete it or pass --force to replace it")

    files = _source_files(homework_dir)
    sizes = {path: path.stat().st_size for path in files}
    # The grader refuses a zip that unpacks to more than MAX_BYTES, so that is what we check, before
    # writing anything. For source code, the compressed zip is several times smaller still.
    total = sum(sizes.values())
    if total > MAX_BYTES:
        biggest = sorted(files, key=sizes.get, reverse=True)[:3]
        names = ", ".join(f"{p.relative_to(homework_dir)} ({mb(sizes[p], 1)})" for p in biggest)
        raise BundleError(f"the homework files add up to {mb(total, 1)}, over the {mb(MAX_BYTES, 1)} limit; biggest: {names}")

    # Write a temporary file, then rename it: an interrupted run never leaves a broken zip behind.
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        # strict_timestamps=False: a file dated before 1980 (zip's first year) is stored as 1980, not refused.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as archive:
            for path in files:
                archive.write(path, "homework/" + path.relative_to(homework_dir).as_posix())  # the grader looks for homework/
        tmp.replace(out)
    except OSError as e:
        raise BundleError(f"cannot write {out}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)  # after the rename, there is nothing left to remove
    return out


def _source_files(homework_dir: Path) -> list[Path]:
    """The files to submit, in a fixed order."""
    files = []
    for folder, subfolders, names in os.walk(homework_dir):
        # Pruning `subfolders` in place keeps os.walk out of caches, hidden folders and virtual
        # environments (which have a pyvenv.cfg), however many .py files they hold.
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and name != "__pycache__" and not (Path(folder) / name / "pyvenv.cfg").exists()
        ]
        for name in names:
            path = Path(folder) / name
            # A symbolic link could point outside the package, so it is never followed.
            if name.startswith(".") or path.is_symlink():
                continue
            if path.suffix in SOURCE_SUFFIXES:
                files.append(path)
    return sorted(files)


def main() -> None:
    # argparse, not fire: fire would turn an ID such as 007 into the number 7.
    parser = argparse.ArgumentParser(description="Pack the homework sources into <UT ID>.zip.")
    parser.add_argument("homework_dir", type=Path, help="the homework folder")
    parser.add_argument("utid", help="your UT ID (EID), e.g. abc123")
    parser.add_argument("--force", action="store_true", help="replace an existing <UT ID>.zip")
    args = parser.parse_args()
    try:
        out = bundle(args.homework_dir, args.utid, args.force)
    except BundleError as e:
        sys.exit(f"error: {e}")
    size_kb = out.stat().st_size / 1024
    print(f"Created {out} ({size_kb:.0f} KB). Check it with: python -m grader {out}")


if __name__ == "__main__":
    main()
