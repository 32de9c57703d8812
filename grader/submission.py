"""
Safe unpacking of a submission zip, which may come from anyone.

A zip is a list of names, file types and compressed bytes, and all of them can be hostile:
- a name can point outside the folder we unpack into ("../x.py", "/etc/x", "..\\x.py": zip slip);
- an entry can be a symbolic link or a device file instead of a plain file;
- a few KB can unpack to gigabytes (zip bomb), and the sizes a zip declares can lie;
- a zip can hold thousands of entries, or several `homework` packages of which we would grade one.

extract_submission() checks every entry before writing anything, then writes only the files of the
one `homework` package, as new plain files inside `dest`, counting the bytes as they come out. Its
errors never name the zip's path: the file graded may be a copy in a temporary folder (batch mode,
Gradescope), and the student reads them.
"""

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from .parts import MB, mb

MAX_BYTES = 20 * MB  # the handout's limit, both for the zip and for what it unpacks to
MAX_MEMBERS = 1000  # a homework package has a few dozen files
MAX_RATIO = 100  # Python source compresses about 4x; a zip bomb about 1000x
CHUNK = 64 * 1024  # bytes unpacked at a time
# What zipfile raises for a damaged zip, besides OSError: garbled numbers or names, cut-off data.
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)


class SubmissionError(Exception):
    """The submission cannot be graded; the message says why, in one line."""


def extract_submission(zip_path: Path, dest: Path) -> Path:
    """
    Unpack the `homework` package of `zip_path` into `dest` and return its path (`dest/homework`).
    `dest/homework` must not exist yet. On error, `dest` may hold part of the package: use a fresh
    temporary folder.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        size = zip_path.stat().st_size
        if size > MAX_BYTES:
            raise SubmissionError(f"the zip is {mb(size, 1)}; the limit is {mb(MAX_BYTES, 1)}")
        archive = zipfile.ZipFile(zip_path)
    except OSError as e:
        raise SubmissionError(f"cannot read the zip: {e.strerror}") from None
    except DAMAGED:
        raise SubmissionError("not a zip file (or it is truncated or corrupt)") from None

    with archive:
        members = archive.infolist()
        _check_archive(members)
        package = _package_files(members)
        dest.mkdir(parents=True, exist_ok=True)
        # No exist_ok here: we only write into a folder we just made, never through something
        # already there (a symbolic link, say).
        (dest / "homework").mkdir()
        for member, relative in package:
            _extract(archive, member, dest / relative)
    return dest / "homework"


def _check_archive(members: list[zipfile.ZipInfo]) -> None:
    """Refuse the whole zip if any entry is unsafe, whether or not we would unpack it."""
    if len(members) > MAX_MEMBERS:
        raise SubmissionError(f"{len(members)} files and folders; the limit is {MAX_MEMBERS}")
    for member in members:
        _check_member(member)

    # The sizes a zip declares are checked here, and enforced again while unpacking (see _copy).
    unpacked = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members)
    if unpacked > MAX_BYTES:
        raise SubmissionError(f"the zip unpacks to {mb(unpacked, 1)}; the limit is {mb(MAX_BYTES, 1)}")
    if unpacked > MAX_RATIO * packed:
        raise SubmissionError(f"the zip expands more than {MAX_RATIO}x when unpacked; it looks like a zip bomb")


def _check_member(member: zipfile.ZipInfo) -> None:
    name = member.filename
    # A backslash is a folder separator on Windows, so "..\\x.py" would dodge the ".." check below.
    if "\\" in name:
        raise SubmissionError(f"entry {name!r} contains a backslash; use '/' in zip paths")
    if name.startswith("/") or PureWindowsPath(name).drive:
        raise SubmissionError(f"entry {name!r} is an absolute path; zip paths must be relative")
    if ".." in PurePosixPath(name).parts:
        raise SubmissionError(f"entry {name!r} contains '..', which could escape the folder")
    # Zips made on Unix keep the file's mode (type and permissions) in the top 16 bits.
    kind = stat.S_IFMT(member.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise SubmissionError(f"entry {name!r} is a symbolic link; only plain files are allowed")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: made on Windows, no type recorded
        raise SubmissionError(f"entry {name!r} is a device, pipe or socket; only plain files are allowed")
    if member.flag_bits & 0x1:
        raise SubmissionError(f"entry {name!r} is encrypted; submit a zip without a password")


def _package_files(members: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """
    The files of the one `homework` package, each with its path relative to the folder holding
    `homework`. The package may sit at the top of the zip or inside one wrapper folder.
    """
    # Folders are made as needed. (Not m.is_dir(): it fails on an empty name.)
    files = [(m, PurePosixPath(m.filename)) for m in members if not m.filename.endswith("/")]
    files = [(m, path) for m, path in files if not _is_junk(path)]

    inits = [path for m, path in files if path.parts[-2:] == ("homework", "__init__.py")]
    roots = sorted({path.parent.parent for path in inits if len(path.parts) <= 3})
    if not roots:
        raise SubmissionError("no homework package: expected homework/__init__.py at the top or in one folder")
    if len(roots) > 1:
        found = ", ".join(str(root / "homework") for root in roots)
        raise SubmissionError(f"{len(roots)} homework packages ({found}); expected one")

    package = roots[0] / "homework"
    return [(m, path.relative_to(roots[0])) for m, path in files if path.is_relative_to(package)]


def _is_junk(path: PurePosixPath) -> bool:
    """What macOS adds to zips made in Finder: never part of a submission."""
    return path.parts[:1] == ("__MACOSX",) or path.name == ".DS_Store"


def _extract(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "xb" never replaces a file, so an entry listed twice cannot overwrite the first copy.
        out = open(target, "xb")
    except OSError as e:
        raise SubmissionError(f"cannot extract entry {member.filename!r}: {e.strerror}") from None
    with out:
        try:
            with archive.open(member) as source:
                _copy(source, out, member.file_size, member.filename)
        except (OSError, *DAMAGED) as e:
            reason = str(e) or "its data ends early"  # a bare EOFError: the data stops short
            raise SubmissionError(f"the zip is corrupt: {reason}") from None


def _copy(source: BinaryIO, out: BinaryIO, limit: int, name: str) -> None:
    """Copy at most `limit` bytes: the declared size was checked, but it is the zip's word only."""
    written = 0
    while chunk := source.read(CHUNK):
        written += len(chunk)
        if written > limit:
            raise SubmissionError(f"entry {name!r} unpacks to more than the {limit} bytes it declares")
        out.write(chunk)
