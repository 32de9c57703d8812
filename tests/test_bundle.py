"""bundle.py: packs only the homework sources, and the grader unpacks them unchanged."""

import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bundle import BundleError, bundle
from grader.submission import MAX_BYTES, extract_submission

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def homework(tmp_path, monkeypatch):
    """A copy of the homework package to play with; the current folder is where zips go."""
    copy = shutil.copytree(REPO / "homework", tmp_path / "homework", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    return copy


def sources(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*.py")}


def test_round_trip_packs_only_sources(homework, tmp_path):
    expected = sources(homework)
    outside = tmp_path / "secret.py"
    outside.write_text("password = 'hunter2'\n")
    clutter = {
        "__pycache__/models.cpython-311.pyc": b"\0",
        "bignet.pth": b"\0",
        "checkpoint.safetensors": b"\0",
        "scratch.ipynb": b"{}",
        "data/train.npz": b"\0",
        ".venv/lib/site.py": b"",
        "venv/pyvenv.cfg": b"",
        "venv/lib/site.py": b"",
        ".hidden.py": b"",
        "old.zip": b"PK",
    }
    for name, data in clutter.items():
        (homework / name).parent.mkdir(parents=True, exist_ok=True)
        (homework / name).write_bytes(data)
    (homework / "linked.py").symlink_to(outside)

    zip_path = bundle(homework, "abc123")

    assert zip_path == Path("abc123.zip")
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(f"homework/{name}" for name in expected)
    package_dir = extract_submission(zip_path, tmp_path / "unpacked")
    assert sources(package_dir) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["abc123.zip", "homework", "secret.py", "unpacked"]


@pytest.mark.parametrize("utid", ["", "a", "a/b", "../abc", "-rf", ".abc", "abc 123", "abc123.zip", "x" * 33])
def test_rejects_invalid_ids(homework, utid):
    with pytest.raises(BundleError) as error:
        bundle(homework, utid)
    expected = f"{utid!r} is not a valid UT ID: use 2 to 32 letters, digits, '-' or '_', starting with a letter or digit"
    assert str(error.value) == expected


@pytest.mark.parametrize("utid", ["ab", "abc123", "ab-12_c", "007"])
def test_accepts_valid_ids(homework, utid):
    assert bundle(homework, utid) == Path(f"{utid}.zip")


def test_never_overwrites_without_force(homework):
    Path("abc123.zip").write_bytes(b"an older submission")
    with pytest.raises(BundleError) as error:
        bundle(homework, "abc123")
    assert str(error.value) == "abc123.zip already exists; delete it or pass --force to replace it"
    assert Path("abc123.zip").read_bytes() == b"an older submission"

    bundle(homework, "abc123", force=True)
    assert zipfile.is_zipfile("abc123.zip")


def test_refuses_more_than_the_limit_and_names_the_biggest_files(homework, tmp_path):
    (homework / "weights.py").write_bytes(random.Random(0).randbytes(MAX_BYTES))
    with pytest.raises(BundleError) as error:
        bundle(homework, "abc123")
    message = str(error.value)
    assert re.fullmatch(r"the homework files add up to 20\.\d MB, over the 20\.0 MB limit; biggest: weights\.py \(20\.0 MB\), .*", message)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["homework"]  # no zip, no temporary file


def test_rejects_what_is_not_the_homework_package(homework, tmp_path):
    (homework / "__init__.py").unlink()
    cases = {
        tmp_path / "missing": f"{tmp_path / 'missing'} does not exist",
        homework / "models.py": f"{homework / 'models.py'} is not a folder",
        tmp_path: f"{tmp_path} is not the homework package (homework/__init__.py)",  # wrong name
        homework: f"{homework} is not the homework package (homework/__init__.py)",  # no __init__.py
    }
    for folder, message in cases.items():
        with pytest.raises(BundleError) as error:
            bundle(folder, "abc123")
        assert str(error.value) == message


def run_bundle(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / "bundle.py"), *args], cwd=cwd, capture_output=True, text=True)


def test_command_line(homework, tmp_path):
    done = run_bundle("homework", "abc123", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip().endswith("Check it with: python -m grader abc123.zip")

    again = run_bundle("homework", "abc123", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr == "error: abc123.zip already exists; delete it or pass --force to replace it\n"

    assert run_bundle("homework", "abc123", "--force", cwd=tmp_path).returncode == 0


def test_a_file_dated_before_1980_is_packed(homework):
    """zip has no year before 1980: such a date (an unpacked archive's, a clock reset) is stored as 1980."""
    os.utime(homework / "lora.py", (0, 0))  # 1970
    with zipfile.ZipFile(bundle(homework, "abc123")) as archive:
        assert archive.getinfo("homework/lora.py").date_time[0] == 1980


def test_the_folder_may_be_named_in_any_case(homework):
    """On a case-insensitive file system, `python bundle.py Homework ID` names the same folder: the zip holds homework/ all the same."""
    renamed = homework.rename(homework.with_name("Homework"))
    with zipfile.ZipFile(bundle(renamed, "abc123")) as archive:
        assert "homework/__init__.py" in archive.namelist() and not any(name.startswith("Homework/") for name in archive.namelist())
