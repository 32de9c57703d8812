"""grader/submission.py: every way a submission zip can be hostile or broken gets a one-line error."""

import io
import stat
import struct
import zipfile

import pytest

from grader.submission import MAX_BYTES, MAX_MEMBERS, SubmissionError, _copy, extract_submission
from tests.helpers import write_zip

PACKAGE = {"homework/__init__.py": b'"""Homework."""\n', "homework/models.py": b"x = 1\n"}


def special(name, mode):
    """An entry whose Unix mode marks it as a symbolic link, device, ..."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = mode << 16
    return info


def rejection(zip_path, dest):
    with pytest.raises(SubmissionError) as error:
        extract_submission(zip_path, dest)
    message = str(error.value)
    assert "\n" not in message
    return message


def extracted(package_dir):
    return {path.relative_to(package_dir.parent).as_posix(): path.read_bytes() for path in package_dir.rglob("*") if path.is_file()}


def test_extracts_the_package(tmp_path):
    zip_path = write_zip(tmp_path / "abc123.zip", PACKAGE)
    package_dir = extract_submission(zip_path, tmp_path / "out")
    assert package_dir == tmp_path / "out" / "homework"
    assert extracted(package_dir) == PACKAGE


def test_tolerates_macos_junk(tmp_path):
    junk = {"__MACOSX/homework/._models.py": b"\0", "homework/.DS_Store": b"\0", ".DS_Store": b"\0"}
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, **junk})
    assert extracted(extract_submission(zip_path, tmp_path / "out")) == PACKAGE


def test_tolerates_one_wrapper_folder_and_extracts_only_the_package(tmp_path):
    wrapped = {f"abc123/{name}": data for name, data in PACKAGE.items()}
    zip_path = write_zip(tmp_path / "abc123.zip", {**wrapped, "abc123/notes.txt": b"hi"})
    package_dir = extract_submission(zip_path, tmp_path / "out")
    assert extracted(package_dir) == PACKAGE
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["homework"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("../evil.py", "entry '../evil.py' contains '..', which could escape the folder"),
        ("../evil\n.py", "entry '../evil\\n.py' contains '..', which could escape the folder"),
        ("homework/../../evil.py", "entry 'homework/../../evil.py' contains '..', which could escape the folder"),
        ("/tmp/evil.py", "entry '/tmp/evil.py' is an absolute path; zip paths must be relative"),
        ("C:/evil.py", "entry 'C:/evil.py' is an absolute path; zip paths must be relative"),
        ("..\\evil.py", "entry '..\\\\evil.py' contains a backslash; use '/' in zip paths"),
        (special("homework/evil.py", stat.S_IFLNK | 0o777), "entry 'homework/evil.py' is a symbolic link; only plain files are allowed"),
        (
            special("homework/evil.py", stat.S_IFCHR | 0o666),
            "entry 'homework/evil.py' is a device, pipe or socket; only plain files are allowed",
        ),
        (
            special("homework/evil.py", stat.S_IFIFO | 0o666),
            "entry 'homework/evil.py' is a device, pipe or socket; only plain files are allowed",
        ),
    ],
)
def test_rejects_unsafe_entries_before_writing_anything(tmp_path, entry, message):
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, entry: b"import os\n"})
    assert rejection(zip_path, tmp_path / "out") == message
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["abc123.zip"]


def patch_directory(zip_path, name, offset, fmt, value):
    """
    Rewrite a field of `name`'s record in the zip's central directory, which is what zipfile
    trusts: a hand-made zip can say anything there.
    """
    data = bytearray(zip_path.read_bytes())
    record = data.rindex(name.encode()) - 46  # the name's last copy ends its central record
    assert data[record : record + 4] == b"PK\x01\x02"
    struct.pack_into(fmt, data, record + offset, value)
    zip_path.write_bytes(data)


def test_rejects_encrypted_entries(tmp_path):
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, "homework/secret.py": b"x = 1\n"})
    patch_directory(zip_path, "homework/secret.py", 8, "<H", 0x1)  # flags: encrypted
    message = "entry 'homework/secret.py' is encrypted; submit a zip without a password"
    assert rejection(zip_path, tmp_path / "out") == message


def test_rejects_a_zip_bomb(tmp_path):
    # 5 MB of zeros packs into 5 KB: under the size limit, but nothing like source code.
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, "homework/data.py": bytes(5 * 2**20)})
    message = "the zip expands more than 100x when unpacked; it looks like a zip bomb"
    assert rejection(zip_path, tmp_path / "out") == message


def test_rejects_a_huge_declared_size(tmp_path):
    zip_path = write_zip(tmp_path / "abc123.zip", PACKAGE)
    patch_directory(zip_path, "homework/models.py", 24, "<I", 2**31)  # uncompressed size
    assert rejection(zip_path, tmp_path / "out") == "the zip unpacks to 2048.0 MB; the limit is 20.0 MB"


def test_rejects_a_member_bigger_than_declared(tmp_path):
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, "homework/data.py": b"x = 1\n" * 1000})
    patch_directory(zip_path, "homework/data.py", 24, "<I", 10)  # uncompressed size
    message = rejection(zip_path, tmp_path / "out")
    assert message == "the zip is corrupt: Bad CRC-32 for file 'homework/data.py'"


def test_copy_stops_past_the_declared_size():
    # zipfile itself stops at the declared size; _copy does not rely on it.
    with pytest.raises(SubmissionError, match="^entry 'x.py' unpacks to more than the 10 bytes it declares$"):
        _copy(io.BytesIO(bytes(100)), io.BytesIO(), 10, "x.py")


def test_rejects_an_oversized_zip(tmp_path):
    big = {**PACKAGE, "homework/weights.py": bytes(MAX_BYTES + 2**20)}
    zip_path = write_zip(tmp_path / "abc123.zip", big, method=zipfile.ZIP_STORED)
    assert rejection(zip_path, tmp_path / "out") == "the zip is 21.0 MB; the limit is 20.0 MB"


def test_rejects_too_many_entries(tmp_path):
    many = {f"homework/m{i}.py": b"" for i in range(MAX_MEMBERS)}
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, **many})
    assert rejection(zip_path, tmp_path / "out") == "1002 files and folders; the limit is 1000"


def test_rejects_what_is_not_a_zip(tmp_path):
    missing = tmp_path / "missing.zip"
    assert rejection(missing, tmp_path / "out") == "cannot read the zip: No such file or directory"

    text = tmp_path / "text.zip"
    text.write_text("not a zip")
    assert rejection(text, tmp_path / "out") == "not a zip file (or it is truncated or corrupt)"

    truncated = write_zip(tmp_path / "truncated.zip", PACKAGE)
    truncated.write_bytes(truncated.read_bytes()[:-30])
    assert rejection(truncated, tmp_path / "out") == "not a zip file (or it is truncated or corrupt)"


def test_rejects_corrupt_data(tmp_path):
    zip_path = write_zip(tmp_path / "abc123.zip", PACKAGE, method=zipfile.ZIP_STORED)
    data = zip_path.read_bytes()
    zip_path.write_bytes(data.replace(b"x = 1", b"x = 2"))
    message = "the zip is corrupt: Bad CRC-32 for file 'homework/models.py'"
    assert rejection(zip_path, tmp_path / "out") == message


@pytest.mark.parametrize(
    "names",
    [
        ["models.py"],  # no package folder
        ["homework/models.py"],  # no __init__.py
        ["a/b/homework/__init__.py"],  # two folders deep
        ["__MACOSX/homework/__init__.py"],  # junk only
    ],
)
def test_rejects_a_zip_without_the_package(tmp_path, names):
    zip_path = write_zip(tmp_path / "abc123.zip", dict.fromkeys(names, b""))
    message = "no homework package: expected homework/__init__.py at the top or in one folder"
    assert rejection(zip_path, tmp_path / "out") == message


def test_rejects_two_packages(tmp_path):
    copy = {f"old/{name}": data for name, data in PACKAGE.items()}
    zip_path = write_zip(tmp_path / "abc123.zip", {**PACKAGE, **copy})
    message = "2 homework packages (homework, old/homework); expected one"
    assert rejection(zip_path, tmp_path / "out") == message


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_rejects_an_entry_listed_twice(tmp_path):
    zip_path = tmp_path / "abc123.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, data in [*PACKAGE.items(), ("homework/models.py", b"x = 2\n")]:
            archive.writestr(name, data)
    message = "cannot extract entry 'homework/models.py': File exists"
    assert rejection(zip_path, tmp_path / "out") == message


def test_never_writes_through_an_existing_folder(tmp_path):
    # A link planted at dest/homework would send the files elsewhere: refuse instead.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "homework").symlink_to(elsewhere)
    zip_path = write_zip(tmp_path / "abc123.zip", PACKAGE)
    with pytest.raises(FileExistsError):
        extract_submission(zip_path, tmp_path / "out")
    assert list(elsewhere.iterdir()) == []
