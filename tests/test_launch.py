"""grader/launch.py: who a part's process runs as, and what it may read."""

import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader import launch
from grader.launch import Uids, python_folders, readable_by_others


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="uids of their own need root")
def test_grading_runs_side_by_side_hold_blocks_of_uids_of_their_own(monkeypatch):
    monkeypatch.setattr(launch, "readable_by_others", lambda path: True)
    first, second = Uids(), Uids()
    try:
        assert first.separate and second.separate
        taken = [first.take()[0] for _ in range(launch.UIDS_PER_RUN - 1)]
        assert sorted(taken) == list(range(first.group + 1, first.group + launch.UIDS_PER_RUN))  # each once, in no order
        assert taken != sorted(taken)
        assert second.take()[1] == second.group >= first.group + launch.UIDS_PER_RUN
        with pytest.raises(launch.GraderError, match="99 part processes at most"):
            first.take()
        assert all(not launch.has_account(uid) for uid in taken)
    finally:
        first.close()
    third = Uids()  # the first block is free again
    try:
        assert third.group == first.group
    finally:
        second.close()
        third.close()


def test_a_python_others_cannot_read_is_not_lent_to_other_users():
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # pytest's own folders are its user's alone
        os.chmod(folder, 0o755)
        private = Path(folder) / "private"
        private.mkdir(mode=0o700)
        (private / "python").write_text("")
        assert not readable_by_others(private / "python")
        private.chmod(0o755)
        (private / "python").chmod(0o644)
        assert readable_by_others(private / "python")


def test_a_part_may_read_python_but_no_private_folder_nor_proc(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.syspath_prepend(str(tmp_path))  # where the grader was started, or a PYTHONPATH entry: a folder of submissions, say
    readable, path = python_folders([repo / "homework", repo / "checkpoints"])
    assert str(tmp_path) not in path and not any(folder.startswith(str(tmp_path)) for folder in readable)
    assert "/proc" not in readable and os.path.realpath(sys.prefix) in readable
    assert "/dev/urandom" in readable and "/etc/passwd" in readable
    assert not any(folder in ("/dev", "/etc") for folder in readable)  # a disk, /etc/shadow: root's files are a root part's to read
    assert not any(
        folder == str(repo) or folder.startswith(str(repo / "homework")) for folder in readable
    )  # the repository holds the private folders
    assert all(os.path.realpath(entry) in readable for entry in path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving files to a group needs root")
def test_a_grading_folder_is_readable_by_its_runs_group_alone(tmp_path):
    submission = tmp_path / "homework"
    submission.mkdir()
    (submission / "__init__.py").write_text("")
    (tmp_path / "run").mkdir()
    launch.prepare(tmp_path / "run", submission, lambda path: path.write_bytes(b"decoy"), group=45000)
    code = tmp_path / "run" / "code" / "homework" / "__init__.py"
    assert (code.stat().st_gid, code.stat().st_mode & 0o777) == (45000, 0o640)
    assert ((tmp_path / "run").stat().st_mode & 0o777) == 0o710  # entered by the group, listed by no one
    (tmp_path / "shared").mkdir()
    launch.prepare(tmp_path / "shared", submission, lambda path: path.write_bytes(b"decoy"), group=None)
    assert ((tmp_path / "shared" / "code" / "homework" / "__init__.py").stat().st_mode & 0o777) == 0o644


def test_packages_installed_with_pip_install_user_are_on_a_parts_path(tmp_path, monkeypatch):
    """A part's HOME is its own folder, so its interpreter would not find the user's site-packages: the grader names them."""
    user_site = tmp_path / "user-site"
    user_site.mkdir()
    monkeypatch.setattr(launch.site, "getusersitepackages", lambda: str(user_site))
    monkeypatch.syspath_prepend(str(user_site))
    readable, path = python_folders([])
    assert str(user_site) in path and str(user_site) in readable


def test_a_parts_interpreter_finds_the_users_own_site_packages(tmp_path):
    """pip install --user puts torch where the user's HOME says: a part's interpreter, started as the grader starts it, looks there too."""
    command = [sys.executable, *launch.PYTHON_FLAGS, "-c", "import site; print(site.getusersitepackages())"]
    started = subprocess.run(command, env=launch.environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, check=True)
    assert started.stdout.strip() == site.getusersitepackages()


def test_a_parts_environment_names_nothing_of_the_grader_nor_where_it_was_started(tmp_path, monkeypatch):
    for name, value in (("GRADER_HIDDEN", "/staff/hidden.json"), ("PWD", "/staff"), ("OLDPWD", "/staff/submissions")):
        monkeypatch.setenv(name, value)
    environment = launch.environment(tmp_path)
    assert not {"GRADER_HIDDEN", "PWD", "OLDPWD"} & environment.keys() and environment["TMPDIR"] == str(tmp_path)
