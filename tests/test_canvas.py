"""
Canvas in (the "Download Submissions" folder batch mode reads) and out (the gradebook CSV to import).
Batch mode on such a folder is tried in test_grader_cli.py.
"""

import csv
import io

import pytest

from grader.canvas import DOWNLOAD_NAME, Submission, fill_gradebook, read_csv, submissions, without_zip
from grader.parts import GraderError


@pytest.mark.parametrize(
    "name, fields",
    [
        ("doejane_12345_67890_hw1.zip", ("doejane", None, "12345", "67890", "hw1.zip")),
        ("doejane_LATE_12345_67891_hw1-1.zip", ("doejane", "_LATE", "12345", "67891", "hw1-1.zip")),
        ("o_brien_4_5_my_homework_2.zip", ("o_brien", None, "4", "5", "my_homework_2.zip")),  # names and files may hold "_"
    ],
)
def test_canvas_download_names_give_the_student_and_the_file(name, fields):
    match = DOWNLOAD_NAME.match(name)
    assert (match["name"], match["late"], match["user"], match["file"], match["original"]) == fields


def test_each_student_gets_their_newest_zip_and_plain_id_zips_still_count(tmp_path):
    for name in (
        "doejane_123_500_hw1.zip",
        "doejane_123_700_hw1-1.zip",
        "doejane_123_701_notes.txt",
        "smithbob_LATE_456_600_hw1.zip",
        "abc123.zip",
        ".DS_Store",
    ):
        (tmp_path / name).write_text("")
    assert submissions(tmp_path) == [
        Submission("123", tmp_path / "doejane_123_700_hw1-1.zip", "doejane"),  # the resubmission, not the first try
        Submission("456", tmp_path / "smithbob_LATE_456_600_hw1.zip", "smithbob", late=True),
        Submission("abc123", tmp_path / "abc123.zip"),
    ]
    (tmp_path / "leekim_789_800_lora.py").write_text("")  # students who sent files, or text, but no zip
    (tmp_path / "ngann_LATE_790_text.html").write_text("")
    assert without_zip(tmp_path, submissions(tmp_path)) == ["leekim_789_800_lora.py", "ngann_LATE_790_text.html"]


GRADEBOOK = (
    "\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Homework 1 (9001),Homework 2 (9002),Current Score\n"
    ",,,,,Manual Posting,,\n"
    "    Points Possible,,,,,100.00,100.00,(read only)\n"
    '"Doe, Jane",123,U1,jd1,Sec 1,,88,90\n'
    '"Smith, Bob",456,U2,bob2,Sec 1,,,50\n'
    '"Ng, Ann",789,U3,an3,Sec 2,,,70\n'
    '"Lee, Kim",790,U4,kl4,Sec 2,60,,70\n'
    '"Student, Test",999,,,Sec 1,,,\n'
)
RESULTS = (
    "id,name,late,file,status,total,extra_credit,score,reason\n"
    "123,doejane,,doejane_123_7_hw1.zip,graded,100,5,105.0,\n"  # Canvas's user id
    "BOB2,,,BOB2.zip,graded,50,5,55.0,\n"  # a plain EID.zip: the SIS Login ID, in any case
    "790,leekim,late,leekim_LATE_790_8_hw1.zip,graded,72.5,0,72.5,\n"  # already graded by hand: 60
    "zz999,,,zz999.zip,graded,0,0,0.0,\n"  # not in the course
    "999,studenttest,,x.zip,grader failed,0,0,0,the grader did not finish\n"
)


def write_inputs(tmp_path):
    (tmp_path / "gradebook.csv").write_text(GRADEBOOK, encoding="utf-8")
    (tmp_path / "results.csv").write_text(RESULTS)
    return tmp_path / "results.csv", tmp_path / "gradebook.csv"


def read(path):
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_the_gradebook_gets_the_scores_in_the_assignment_column_only(tmp_path, capsys):
    results, gradebook = write_inputs(tmp_path)
    counts = fill_gradebook(results, gradebook, "homework 1", tmp_path / "import.csv")
    assert read(tmp_path / "import.csv") == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (9001)"],  # nothing Canvas would take for a new assignment
        ["", "", "", "", "", "Manual Posting"],
        ["    Points Possible", "", "", "", "", "100.00"],
        ["Doe, Jane", "123", "U1", "jd1", "Sec 1", "105"],
        ["Smith, Bob", "456", "U2", "bob2", "Sec 1", "55"],
        ["Ng, Ann", "789", "U3", "an3", "Sec 2", ""],  # no submission: left empty, not 0
        ["Lee, Kim", "790", "U4", "kl4", "Sec 2", "60"],  # a grade already there is kept
        ["Student, Test", "999", "", "", "Sec 1", ""],  # the grader failed on it: nothing written
    ]
    assert counts == {"filled": 2, "missing": 2, "unmatched": 2, "kept": 1}
    err = capsys.readouterr().err
    assert "zz999 (no student with that ID, SIS User ID or SIS Login ID)" in err
    assert "999 (not graded: the grader did not finish" in err and "Lee, Kim (60, graded 72.5)" in err


def test_nothing_is_overwritten_without_force_and_missing_is_zero_only_when_asked(tmp_path):
    results, gradebook = write_inputs(tmp_path)
    fill_gradebook(results, gradebook, "9001", tmp_path / "import.csv")
    with pytest.raises(GraderError, match="exists: give --force"):
        fill_gradebook(results, gradebook, "9001", tmp_path / "import.csv")
    fill_gradebook(results, gradebook, "9001", tmp_path / "import.csv", missing_zero=True, force=True)
    cells = {row[0]: row[-1] for row in read(tmp_path / "import.csv")}
    assert cells["Ng, Ann"] == "0" and cells["Lee, Kim"] == "72.5" and cells["Doe, Jane"] == "105"


@pytest.mark.parametrize(
    "assignment, error",
    [
        ("homework", "2 assignments of .* match 'homework': 'Homework 1 \\(9001\\)', 'Homework 2 \\(9002\\)'"),
        ("quiz", "no assignments of .* match 'quiz'"),
    ],
)
def test_the_assignment_must_name_one_column(tmp_path, assignment, error):
    results, gradebook = write_inputs(tmp_path)
    with pytest.raises(GraderError, match=error):
        fill_gradebook(results, gradebook, assignment, tmp_path / "import.csv")


def test_a_file_that_is_not_a_gradebook_export_is_one_line(tmp_path):
    results, _ = write_inputs(tmp_path)
    with pytest.raises(GraderError, match="is not a Canvas gradebook export"):
        fill_gradebook(results, results, "9001", tmp_path / "import.csv")


def test_a_csv_field_may_hold_a_line_break(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text('id,status,score,reason\n123,graded,5,"first line\nsecond line"\n')
    header, rows = read_csv(path)
    assert header == ["id", "status", "score", "reason"] and rows == [["123", "graded", "5", "first line\nsecond line"]]
