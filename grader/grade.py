"""
Grade a submission's homework package: each part runs in its own child process (sandbox.py,
child.py), parts side by side; this process computes the references meanwhile and scores what
the children report.

A part whose child raises, hangs, crashes, exits or runs out of memory scores 0, with one line
saying why; the other parts are graded as usual. Within a part:
- output: all-or-nothing per case, against BigNet's outputs (reference.py);
- memory, adapters: all-or-nothing, and only counted when the public output case passes
  (an empty model is small, but it is not BigNet);
- training: partial credit from the model's starting accuracy to the target;
- extra credit: all-or-nothing for the whole part.
"""

import io
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .parts import (
    FORWARD_LIMIT, MAX_TRAINABLE, MB, MEMORY_CAP, MIN_TRAINABLE, OUTPUT_CAP, PARTS, PUBLIC, PUBLIC_CASE, RESIDENT_SLACK,
    TIMEOUT, TRAINING, GraderError, Part, Suite,
)  # fmt: skip
from .reference import HOMEWORK_DIR, checkpoint_path, output_limits, reference_outputs
from .sandbox import STOP, ChildRun, run_child

SLOWEST_FIRST = ("lora", "qlora", "lower_precision", "low_precision", "half_precision")  # training parts take longest


@dataclass
class Case:
    name: str
    max_score: float
    score: float = 0.0
    message: str = "no result reported"


@dataclass
class PartResult:
    part: Part
    cases: list[Case]
    status: str = "ok"  # ok, error, timeout, crashed (see sandbox.ChildRun)
    reason: str = ""
    output: str = ""  # what the part printed (its tail)
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)  # for the leaderboard: memory, mean_diff, max_diff

    @property
    def score(self) -> float:
        total = sum(case.score for case in self.cases)
        if self.part.extra_credit and total < self.part.max_score:
            return 0.0
        return round(total, 2)


@dataclass
class Report:
    submission: str
    parts: list[PartResult]
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(p.score for p in self.parts if not p.part.extra_credit), 2)

    @property
    def extra_credit(self) -> float:
        return round(sum(p.score for p in self.parts if p.part.extra_credit), 2)


class InvalidSubmission(GraderError):
    """A zip that cannot be graded (see grader/submission.py)."""


def grade_submission(path: str | Path, **options) -> Report:
    """Grade a submission zip or a homework package folder; `options` as for `grade`."""
    path = Path(path)
    if not path.exists():
        raise GraderError(f"no such file or folder: {path}")
    if path.is_dir():
        return grade(path, **options)
    from .submission import SubmissionError, extract_submission

    with tempfile.TemporaryDirectory(prefix="grader-zip-") as tmp:
        try:
            package = extract_submission(path, Path(tmp))
        except SubmissionError as e:
            raise InvalidSubmission(str(e)) from None
        report = grade(package, **options)
    report.submission = str(path.resolve())
    return report


def grade(package: str | Path, suite: Suite = PUBLIC, jobs: int | None = None, timeout: float = TIMEOUT, parts: tuple = ()) -> Report:
    """Grade the homework package folder `package` on `suite`; `parts` limits it to those part names."""
    started = time.monotonic()
    package = Path(package).resolve()
    if not (package / "__init__.py").is_file():
        raise GraderError(f"{package} is not a homework package folder (no __init__.py)")
    selected = [part for part in PARTS if not parts or part.name in parts]
    if parts and len(selected) != len(set(parts)):
        raise GraderError(f"unknown part in {', '.join(parts)}; choose from: {', '.join(p.name for p in PARTS)}")
    references = reference_outputs(suite)
    paths = [checkpoint_path(c) for c in suite.checkpoints]
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        # The child imports a copy: the submission's own folder stays as it was, and nothing beside it is importable.
        shutil.copytree(package, Path(tmp) / "code" / "homework", ignore=shutil.ignore_patterns("__pycache__"))
        order = sorted(selected, key=lambda part: SLOWEST_FIRST.index(part.name))
        with ThreadPoolExecutor(jobs or min(len(selected), cpu_count())) as pool:
            try:
                runs = {part.name: pool.submit(run_part, part, Path(tmp), paths, suite, timeout) for part in order}
                results = [score_part(part, *runs[part.name].result(), references, suite) for part in selected]
            except KeyboardInterrupt:
                STOP.set()  # the children run in their own sessions: Ctrl-C reaches only us
                raise
    return Report(str(package), results, time.monotonic() - started)


def cpu_count() -> int:
    """The cores this process may use (a container may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_part(part: Part, tmp: Path, checkpoints: list[Path], suite: Suite, timeout: float) -> tuple[ChildRun, float]:
    job = {
        "part": part.name,
        "submission": str(tmp / "code"),
        "homework": str(HOMEWORK_DIR),
        "checkpoints": [str(p) for p in checkpoints],
        "inputs": [[i.seed, i.n] for i in suite.inputs],
        "train_seeds": list(suite.train_seeds) if "training" in part.points else [],
        "training": TRAINING,
    }
    started = time.monotonic()
    run = run_child(job, tmp / part.name, timeout, MEMORY_CAP, OUTPUT_CAP)
    return run, time.monotonic() - started


def score_part(part: Part, run: ChildRun, seconds: float, references: dict, suite: Suite) -> PartResult:
    if not in_order(run, part, suite):
        run.status, run.reason = "crashed", "its report came out of order, twice or malformed (was it forged?)"
    result = PartResult(part, plan_cases(part, suite), run.status, run.reason, run.output, seconds)
    try:
        if run.status == "ok":
            score_report(result, run, references, suite)
            return result
    except (KeyError, TypeError, ValueError):  # numbers that are not numbers: only a forged report has them
        result = PartResult(part, plan_cases(part, suite), "crashed", "its report was malformed (was it forged?)", run.output, seconds)
    for case in result.cases:
        case.message = result.reason
    return result


def in_order(run: ChildRun, part: Part, suite: Suite) -> bool:
    """
    Whether the child sent exactly what child.py sends, in that order: the submission runs in the
    child's process and could write to the pipe too, but not without upsetting this order.
    """
    expected = ["start", "loaded", "forward"]
    expected += [f"output {c} {i}" for c in range(len(suite.checkpoints)) for i in range(len(suite.inputs))]
    expected += ["allocated"]
    expected += [f"training {seed}" for seed in suite.train_seeds] if "training" in part.points else []
    if run.status == "ok":
        return run.sequence == expected + ["done"]
    if run.status == "error":
        return run.sequence[-1:] == ["error"] and run.sequence[:-1] == expected[: len(run.sequence) - 1]
    return True  # killed: whatever it sent is not scored


def score_report(result: PartResult, run: ChildRun, references: dict, suite: Suite) -> None:
    part = result.part
    cases = {case.name: case for case in result.cases}
    limits = output_limits(part, suite)
    for header, payload in run.messages:
        if header["kind"] == "output":
            key = suite.checkpoints[header["checkpoint"]], suite.inputs[header["inputs"]]
            passed, message, diffs = check_output(payload, references[key], *limits[key])
            award(cases[output_name(*key)], passed, message)
            if key == (suite.checkpoints[0], suite.inputs[0]):
                result.figures.update(diffs)
        elif header["kind"] == "training":
            progress, message = check_training(header)
            cases[training_name(header["seed"])].score = round(cases[training_name(header["seed"])].max_score * progress, 2)
            cases[training_name(header["seed"])].message = message
    allocated = next(header["bytes"] for header, _ in run.messages if header["kind"] == "allocated")
    loaded, forward = {**run.phases["loaded"], "allocated": allocated}, run.phases["forward"]
    for value in (loaded["allocated"], loaded["theoretical"], loaded["trainable"], forward["peak"]):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"not a number: {value!r}")
    result.figures["memory"] = loaded["allocated"]
    output_passed = cases[output_name(suite.checkpoints[0], suite.inputs[0])].score > 0
    for name, check in (("memory", check_memory), ("adapters", check_adapters)):
        if name in cases:
            passed, message = check(part, run.phases["start"], loaded, forward)
            if not output_passed:
                passed, message = False, f"not counted, the output does not match BigNet's ({message})"
            award(cases[name], passed, message)


def plan_cases(part: Part, suite: Suite) -> list[Case]:
    """The cases of `part` on `suite`, with their points: output and training points shared among their cases."""
    outputs = [output_name(c, i) for c in suite.checkpoints for i in suite.inputs]
    cases = [Case(name, part.points["output"] / len(outputs)) for name in outputs]
    cases += [Case(kind, float(points)) for kind, points in part.points.items() if kind in ("memory", "adapters")]
    if "training" in part.points:
        cases += [Case(training_name(seed), part.points["training"] / len(suite.train_seeds)) for seed in suite.train_seeds]
    return cases


def output_name(checkpoint, inputs) -> str:
    if (checkpoint, inputs) == PUBLIC_CASE:
        return "output"
    return f"output [checkpoint seed {checkpoint.seed} {checkpoint.family}, {inputs.n} inputs seed {inputs.seed}]"


def training_name(seed: int) -> str:
    return "training" if seed == 0 else f"training [seed {seed}]"


def award(case: Case, passed: bool, message: str) -> None:
    case.score, case.message = (case.max_score if passed else 0.0), message


def check_output(payload: bytes, reference: torch.Tensor, max_limit: float, mean_limit: float | None) -> tuple[bool, str, dict]:
    try:
        y = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception:
        return False, "the output could not be read back as a tensor", {}
    if not isinstance(y, torch.Tensor) or y.shape != reference.shape or not y.is_floating_point():
        return False, f"the output is {describe_tensor(y)}; expected float {tuple(reference.shape)}", {}
    y = y.float()
    if not torch.isfinite(y).all():
        return False, "the output has NaN or inf values", {}
    diff = (y - reference).abs()
    diffs = {"max_diff": diff.max().item(), "mean_diff": diff.mean().item()}
    checks = [] if mean_limit is None else [at_most("mean abs diff", diffs["mean_diff"], mean_limit)]
    checks.append(at_most("max abs diff", diffs["max_diff"], max_limit))
    return summarize(checks) + (diffs,)


def check_memory(part: Part, start: dict, loaded: dict, forward: dict) -> tuple[bool, str]:
    checks = [at_most("theoretical", loaded["theoretical"], part.memory_limit, mb), at_most("allocated", loaded["allocated"], part.memory_limit, mb)]
    if "resident" in start:  # the kernel's figures (Linux): what the process really holds, whatever the submission patched
        checks.append(at_most("resident", loaded["resident"] - start["resident"], part.memory_limit + RESIDENT_SLACK, mb))
    checks.append(at_most("forward peak allocated", forward["peak"], FORWARD_LIMIT, mb))
    if forward.get("hwm") is not None:
        checks.append(at_most("forward peak resident", forward["hwm"] - loaded["rss"], FORWARD_LIMIT, mb))
    return summarize(checks)


def check_adapters(part: Part, start: dict, loaded: dict, forward: dict) -> tuple[bool, str]:
    trainable, dtypes = loaded["trainable"], loaded["trainable_dtypes"]
    checks = [
        at_most("trainable parameters", trainable, MAX_TRAINABLE, millions),
        at_least("trainable parameters", trainable, MIN_TRAINABLE, millions),
        (dtypes == ["float32"], f"trainable dtypes: {', '.join(dtypes) or 'none'} (float32 needed)"),
    ]
    return summarize(checks)


def check_training(result: dict) -> tuple[float, str]:
    """(progress from 0 to 1, message): the share of the way from the starting accuracy to the target."""
    if "error" in result:
        return 0.0, str(result["error"])
    start, best, target = result["start"], result["best"], TRAINING["target"]
    if not (math.isfinite(start) and math.isfinite(best)):
        return 0.0, "the accuracy is NaN"
    message = f"accuracy {start:.3f} -> {best:.3f} in {result['steps']} steps (target {target} within {TRAINING['steps']} steps)"
    if not result["finite"]:
        return 0.0, f"the outputs became NaN or inf during training ({message})"
    return (1.0 if best >= target else max(0.0, min(1.0, (best - start) / (target - start)))), message


def at_most(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}") -> tuple[bool, str]:
    return value <= limit, f"{name} {show(value)} {'<=' if value <= limit else '>'} {show(limit)}"


def at_least(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}") -> tuple[bool, str]:
    return value >= limit, f"{name} {show(value)} {'>=' if value >= limit else '<'} {show(limit)}"


def summarize(checks: list[tuple[bool, str]]) -> tuple[bool, str]:
    """All-or-nothing: passed if every check passed; the message lists them all."""
    return all(ok for ok, _ in checks), ", ".join(text for _, text in checks)


def mb(size: float) -> str:
    return f"{size / MB:.2f} MB"


def millions(count: float) -> str:
    return f"{count / 1e6:.2f} M"


def describe_tensor(y) -> str:
    if isinstance(y, torch.Tensor):
        return f"{str(y.dtype).removeprefix('torch.')} {tuple(y.shape)}"
    return f"a {type(y).__name__}"
