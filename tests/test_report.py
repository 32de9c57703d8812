"""grader/report.py: the text report and Gradescope's results.json, from results made by hand."""

import json
import math

import pytest

from grader.parts import PARTS, Kind
from grader.protocol import Stop
from grader.report import gradescope, render, self_check_tests, write_json
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
    return Report("homework", [half, extra, stopped], seconds=12, sandbox={"Landlock": "ABI 7"})


def test_the_text_report_has_a_line_per_part_and_with_v_one_per_case():
    plain, verbose = render(report()).splitlines(), render(report(), verbose=1).splitlines()
    assert plain[2].split()[-3:] == ["10", "/", "20"]
    assert "ran past 300 s of CPU time" in plain[4]
    assert plain[-1].startswith("Total") and "+ 0 / 5 extra credit" in plain[-1]
    assert any("memory 72.11 MB > 40.00 MB" in line for line in verbose) and verbose[-1] == "Sandbox: Landlock: ABI 7"
    assert not any(
        "    output" in line for line in verbose[verbose.index(next(line for line in verbose if line.startswith("LoRA"))) :]
    )  # a stopped part lists no cases


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
