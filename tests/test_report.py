"""grader/report.py: the text report and Gradescope's results.json, from results made by hand."""

import json
import math

import pytest

from grader.parts import PARTS, Kind
from grader.protocol import Stop
from grader.report import gradescope, render, self_check_tests, staff_notes, write_json
from grader.results import Case, PartResult, Report

BY_NAME = {part.name: part for part in PARTS}


def report() -> Report:
    half = PartResult(
        BY_NAME["half_precision"],
        [
            Case("output", Kind.OUTPUT, 10, 10, "max abs diff 0.0003 <= 0.002"),
            Case("memory", Kind.MEMORY, 10, 0, "memory 72.11 MB > 40.00 MB"),
        ],
    )
    extra = PartResult(
        BY_NAME["lower_precision"],
        [Case("output", Kind.OUTPUT, 2, 2, "ok"), Case("memory", Kind.MEMORY, 3, 0, "too big")],
        figures={"memory": 9 * 2**20, "mean_diff": 0.03, "max_diff": 0.2},
    )
    stopped = PartResult(BY_NAME["lora"], [Case("output", Kind.OUTPUT, 10)], stop=Stop.TIMEOUT, reason="ran past 300 s of CPU time")
    # As batch mode grades it: a copy in a temporary folder, on a machine whose Python is its own.
    sandbox = {"separate users": "unavailable: another user cannot read /root/.pyenv/bin/python3.11", "Landlock": "ABI 7"}
    return Report("/tmp/grader-batch-x1y2/abc123.zip", [half, extra, stopped], 12, sandbox, ["this machine's memory ran out"])


def test_the_text_report_has_a_line_per_part_each_failed_case_and_with_v_every_case():
    plain, verbose = render(report()).splitlines(), render(report(), verbose=1).splitlines()
    assert [line.split()[:4] for line in plain[2:7]] == [
        ["Half", "precision", "10", "/"],
        ["memory", "0", "/", "10"],  # a failed case, always; the passed output case only with -v
        ["Lower", "precision", "(extra", "credit)"],
        ["memory", "0", "/", "3"],
        ["LoRA", "0", "/", "30"],
    ]
    assert plain[3].endswith("0 / 10  memory 72.11 MB > 40.00 MB") and plain[6].endswith("ran past 300 s of CPU time")
    assert plain[-1].startswith("Total") and "+ 0 / 5 extra credit" in plain[-1]
    assert [line.split()[0] for line in verbose if line.startswith("    ")] == ["output", "memory", "output", "memory"]
    assert verbose[verbose.index(next(line for line in verbose if line.startswith("LoRA"))) + 1] == ""  # a stopped part: its one reason


def test_what_a_student_reads_names_their_file_and_nothing_of_the_machine():
    for verbose in (0, 1, 2):
        text = render(report(), verbose)
        assert text.startswith("Grading abc123.zip\n") and "/tmp" not in text and "Sandbox" not in text and "memory ran out" not in text
    assert staff_notes(report()).splitlines() == [
        "Sandbox: separate users: unavailable: another user cannot read /root/.pyenv/bin/python3.11; Landlock: ABI 7",
        "Note: this machine's memory ran out",
    ]
    extra_data = gradescope(report())["extra_data"]  # Gradescope shows it to staff only
    assert extra_data["submission"] == "abc123.zip" and extra_data["sandbox"] == report().sandbox


def test_an_extra_credit_part_is_all_or_nothing_in_results_json():
    results = gradescope(report())
    scores = {test["name"]: test["score"] for test in results["tests"]}
    assert scores["Lower precision (extra credit): output"] == 0.0 and scores["Half precision: output"] == 10
    assert results["score"] == 10 and results["leaderboard"][0] == {"name": "Extra credit: memory (MB)", "value": 9.0, "order": "asc"}
    assert {test["status"] for test in self_check_tests(report()) if "extra credit" in test["name"]} == {"failed"}


def test_results_json_refuses_what_is_not_a_number(tmp_path):
    with pytest.raises(ValueError):
        write_json({"score": math.nan}, tmp_path / "results.json")
    write_json({"score": 1.5}, tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == {"score": 1.5}
