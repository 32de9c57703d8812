"""
Grade a submission's homework package. This process is the trusted side: it decides what happens
and when, and scores only raw answers and what the kernel reports. Each part gets its own process
(a worker, grader/worker.py, started by sandbox.py), parts side by side; this process computes the
references meanwhile, asks each worker one request at a time (protocol.py), and scores the answers.

A part whose worker raises, hangs, crashes, exits, runs out of memory or breaks a rule scores 0, with
one line saying why; the other parts are graded as usual. Within a part:
- output: all-or-nothing per case, against BigNet's outputs (reference.py);
- memory, adapters: all-or-nothing, and only counted when the first output case passes
  (an empty model is small, but it is not BigNet);
- training: partial credit from the model's starting accuracy to the target, both measured in a
  fresh worker that never saw the labels;
- extra credit: all-or-nothing for the whole part.
"""

import contextlib
import math
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .parts import (
    DRAW_SPREAD, FORWARD_LIMIT, FORWARD_READ_LIMIT, MB, MEMORY_CAP, MIN_TRAINABLE, OUTPUT_CAP, PARTS, PUBLIC, PUBLIC_CASE,
    RESIDENT_SLACK, TIMEOUT, TRAINING, WALL_FACTOR, GraderError, Part, Suite, derived_seed,
)  # fmt: skip
from .protocol import Ask, BadAnswer, PartStopped, Request, Status, TensorInfo
from .reference import BIGNET_LINEARS, CHECKPOINT_DIR, HOMEWORK_DIR, checkpoint_path, first_departing_layer, output_limits, reference_outputs, trusted
from .sandbox import STOP, Budget, Identity, Worker, launcher, prepare, worker_identity

SLOWEST_FIRST = ("lora", "qlora", "lower_precision", "low_precision", "half_precision")  # training parts take longest


@dataclass
class Case:
    name: str
    max_score: float
    score: float = 0.0
    message: str = "not run"


@dataclass
class PartResult:
    part: Part
    cases: list[Case]
    status: Status = Status.OK
    reason: str = ""
    output: str = ""  # what the part printed (its tail)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # what its processes used, as the kernel counts it: what the time limit is about
    warnings: list[str] = field(default_factory=list)  # what may cost points elsewhere, though it cost none here
    figures: dict = field(default_factory=dict)  # for the leaderboard: memory, mean_diff, max_diff
    protections: dict = field(default_factory=dict)  # what the kernel enforced on its worker (worker.confine)

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
    sandbox: dict = field(default_factory=dict)  # protection -> what it achieved, or why it is unavailable

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


@dataclass(frozen=True)
class Grading:
    """What every part of one grading run shares."""

    root: Path  # the grading folder (sandbox.prepare)
    suite: Suite
    checkpoints: tuple  # their files, in the order of suite.checkpoints
    references: dict
    identity: Identity
    launcher: object  # sandbox.launcher: how workers are started
    timeout: float
    private: tuple  # what no worker may read: the grader's checkpoints, its homework package, the hidden configuration


def grade(package: str | Path, suite: Suite = PUBLIC, jobs: int | None = None, timeout: float = TIMEOUT, parts: tuple = (), hidden: str | Path | None = None) -> Report:
    """Grade the homework package folder `package` on `suite` (read from the file `hidden`, if any); `parts` limits it to those part names."""
    started = time.monotonic()
    package = Path(package).resolve()
    if not (package / "__init__.py").is_file():
        raise GraderError(f"{package} is not a homework package folder (no __init__.py)")
    selected = [part for part in PARTS if not parts or part.name in parts]
    if parts and len(selected) != len(set(parts)):
        raise GraderError(f"unknown part in {', '.join(parts)}; choose from: {', '.join(p.name for p in PARTS)}")
    references = reference_outputs(suite)
    checkpoints = tuple(checkpoint_path(c) for c in suite.checkpoints)
    private = (CHECKPOINT_DIR, HOMEWORK_DIR, *checkpoints, *([Path(hidden)] if hidden else []))
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        prepare(Path(tmp), package)
        start_workers = launcher(Path(tmp))
        grading = Grading(Path(tmp), suite, checkpoints, references, worker_identity(), start_workers, timeout, private)
        order = sorted(selected, key=lambda part: SLOWEST_FIRST.index(part.name))
        with ThreadPoolExecutor(jobs or min(len(selected), cpu_count())) as pool:
            try:
                runs = {part.name: pool.submit(grade_part, part, grading) for part in order}
                results = {name: run.result() for name, run in runs.items()}
            except KeyboardInterrupt:
                STOP.set()  # the workers run in their own sessions: Ctrl-C reaches only us
                raise
            finally:
                start_workers.close()
    sandbox = {"separate user": grading.identity.note if grading.identity.separate else f"unavailable: {grading.identity.note}"}
    sandbox.update(next((r.protections for r in results.values() if r.protections), {}))
    return Report(str(package), [results[part.name] for part in selected], time.monotonic() - started, sandbox)


def cpu_count() -> int:
    """
    The cores this process may use: a container may allow fewer than the machine has, by affinity or by
    a CPU quota. Gradescope's default is half a core: parts side by side there would share it, each
    slowed past its time limit, so they run one after another.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cores, int(quota))) if quota else cores


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU quota in cores (its cgroup, as a container sees it at /sys/fs/cgroup), or None for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()  # cgroup v2: "50000 100000", or "max 100000"
    except (OSError, ValueError):
        try:
            quota, period = ((cgroup / "cpu" / f"cpu.cfs_{name}_us").read_text() for name in ("quota", "period"))  # v1: -1 for none
        except OSError:
            return None
    return None if quota.strip() in ("max", "-1") else int(quota) / int(period)


def grade_part(part: Part, grading: Grading) -> PartResult:
    """Every case of `part`, scored; a worker that stops scores 0 on all of them, for one reason."""
    started = time.monotonic()
    result = PartResult(part, plan_cases(part, grading.suite))
    budget = Budget(grading.timeout, WALL_FACTOR * grading.timeout)
    workers = []

    def new_worker(name: str) -> Worker:
        workers.append(Worker(part.name, grading.root, f"{part.name}-{name}", budget, grading.identity, grading.private, MEMORY_CAP, OUTPUT_CAP, grading.launcher))
        return workers[-1]

    seeds = grading.suite.train_seeds if "training" in part.points else ()
    try:
        with new_worker("main") as worker, contextlib.ExitStack() as stack, ThreadPoolExecutor(max(1, len(seeds))) as starter:
            # The workers that evaluate training start now, beside the main one: they are ready when needed.
            evaluators = [stack.enter_context(new_worker(f"evaluation-{k + 1}")) for k in range(len(seeds))]
            ready = [starter.submit(evaluator.start) for evaluator in evaluators]
            result.protections = worker.start()
            score_outputs_and_memory(result, grading, worker)
            for k, seed in enumerate(seeds):
                score_training(result.cases[k - len(seeds)], grading, seed, worker, evaluators[k], ready[k])
    except PartStopped as stopped:
        result.status, result.reason = stopped.status, stopped.reason
        for case in result.cases:
            case.score, case.message = 0.0, result.reason
    result.output = "\n".join(w.output() for w in workers if w.log.exists()).strip()
    result.seconds, result.cpu_seconds = time.monotonic() - started, budget.used
    warning = result.status == Status.OK and time_warning(result.figures.get("products"), budget.used, budget.cpu_limit)
    if warning:
        result.warnings.insert(0, warning)
    return result


def time_warning(products, used: float, limit: float) -> str:
    """
    Before time costs points: a part that used over half its CPU time, or computes mostly in half
    precision, which a CPU is slow at. Hidden cases run several times as many inputs, checkpoints and
    training steps. `products`: the multiply-adds by dtype (worker.MatrixProducts), as the part's process sent them.
    """
    valid = isinstance(products, dict) and all(isinstance(n, int) and n >= 0 for n in products.values())
    total = sum(products.values()) if valid else 0
    half = sum(n for dtype, n in products.items() if dtype in ("float16", "bfloat16")) if valid else 0
    if total and half / total > 0.5:
        return f"{half / total:.0%} of its matrix products are in float16 or bfloat16, which a CPU computes 15 to 20 times slower than float32: it used {used:.0f} s of CPU time here, and hidden cases, several times larger, must fit in {limit:g} s"
    if used > limit / 2:
        return f"it used {used:.0f} s of CPU time, over half its limit of {limit:g} s, and hidden cases are several times larger"
    return ""


def score_outputs_and_memory(result: PartResult, grading: Grading, worker: Worker) -> None:
    """
    Load, then the kernel's figures for the loaded model, then the inputs, one batch per request:
    nothing the model could use reaches the worker before its memory has been read.
    """
    part, suite = result.part, grading.suite
    cases = {case.name: case for case in result.cases}
    limits = output_limits(part, suite)
    batches = [trusted("compare").random_inputs(inputs.n, inputs.seed) for inputs in suite.inputs]
    start = worker.memory()
    # By the time load() returns here, the checkpoint's copy is gone and the worker holds no file
    # (Worker.load): whatever it kept of the float32 weights is in its memory now, and counts.
    model = worker.load(grading.checkpoints[0], seed=0).fields["tensors"]
    loaded = worker.memory()
    forward = {}
    for c, (checkpoint, path) in enumerate(zip(suite.checkpoints, grading.checkpoints)):
        if c > 0:
            worker.load(path, seed=0)
        for i, (inputs, x) in enumerate(zip(suite.inputs, batches)):
            first = c == 0 and i == 0
            if first:
                has_peak, read_before = worker.reset_peak(), worker.bytes_read()
            answer = worker.ask(Request(Ask.FORWARD, {"profile": False}, {"x": x}))
            if first:
                figures = worker.memory()
                if figures and has_peak:
                    forward["hwm"] = figures["hwm"] - loaded["rss"]
                if read_before is not None:
                    forward["read"] = worker.bytes_read() - read_before - worker.last_request_size
            passed, message, diffs = check_output(answer.tensors["y"], grading.references[checkpoint, inputs], *limits[checkpoint, inputs])
            award(cases[output_name(suite, c, i)], passed, message)
            close = diffs and near_limit(diffs, *limits[checkpoint, inputs])
            if close:
                result.warnings.append(f"{output_name(suite, c, i)}: {close}")
            if first:
                result.figures.update(diffs)
    # Last, what PyTorch's allocators say, under their profiler, which keeps memory for every operation it
    # watches: a second load (the memory it still holds) and a forward (its peak). Where the kernel's
    # figures exist (Linux) they already bound the scored model; these are all there is on macOS.
    allocated = worker.load(grading.checkpoints[0], seed=0, ask=Ask.PROFILED_LOAD).fields["allocated"]
    profiled = worker.ask(Request(Ask.FORWARD, {"profile": True}, {"x": batches[0]})).fields
    forward["peak"] = profiled["peak"]
    figures = model_figures(model, allocated, loaded["resident"] - start["resident"] if loaded and start else None)
    result.figures.update(memory=allocated, products=profiled["products"])
    first = cases[output_name(suite, 0, 0)]
    if first.score == 0 and "max_diff" in result.figures:  # it computed something, but not BigNet's output: say where
        first.message += departure(worker, part, suite.checkpoints[0], batches[0][:16])
    if figures["trainable"] == 0:
        result.warnings.append("nothing in the model is trainable: the course's grader measures a backward pass and fails such a model (keep the LayerNorms trainable)")
    output_passed = first.score > 0
    for name, check in (("memory", check_memory), ("adapters", check_adapters)):
        if name in cases:
            passed, message = check(part, figures, forward)
            if not output_passed:
                passed, message = False, f"not counted, the output does not match BigNet's ({message})"
            award(cases[name], passed, message)


def departure(worker: Worker, part: Part, checkpoint, x: torch.Tensor) -> str:
    """Where the worker's model departs from BigNet's (reference.first_departing_layer); "" if it cannot say."""
    try:
        layers = worker.ask(Request(Ask.LAYERS, {"names": list(BIGNET_LINEARS)}, {"x": x})).tensors
    except PartStopped as stopped:
        if stopped.status != Status.ERROR:
            raise
        return ""  # its modules raised when watched: the output case already says what counts
    return first_departing_layer(layers, part.scheme, checkpoint)


def model_figures(tensors: list[TensorInfo], allocated: int, resident: int | None) -> dict:
    """The loaded model's sizes: from its tensors' shapes and dtypes, the allocator's count, the kernel's."""
    trainable = [t for t in tensors if t.trainable]
    return {
        "theoretical": sum(t.bytes for t in tensors),
        "allocated": allocated,
        "resident": resident,
        "trainable": sum(math.prod(t.shape) for t in trainable),
        "trainable_dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in trainable}),
    }


def score_training(case: Case, grading: Grading, seed: int, worker: Worker, evaluator: Worker, evaluator_ready: Future) -> None:
    """
    Train in `worker`, which gets the inputs and, each step, the gradient of the loss with respect to
    its features: never the labels or the head, which stay here. The trained tensors then go to a
    fresh worker, which answers with features for the inputs in another order; the accuracy is
    computed here, before and after.
    """
    x, labels, head = trusted("fit").noise_classification(TRAINING["samples"], seed)
    init = derived_seed(seed, "initialization")  # the adapters' random init; the data's seed stays here
    tensors = worker.load(grading.checkpoints[0], seed=init).fields["tensors"]
    trainable = {t.name: t for t in tensors if t.trainable}
    if not trainable:
        case.score, case.message = 0.0, "the model has no trainable parameters: there is nothing to train"
        return
    order = permutation(len(x), seed, "training order")
    features = worker.ask(Request(Ask.TRAIN, {"lr": TRAINING["lr"]}, {"x": x[order]})).tensors["features"]
    steps = 0
    while steps < TRAINING["steps"] and not features_fail(features, x) and accuracy(features, head, labels[order]) < TRAINING["target"]:
        gradient = loss_gradient(features, head, labels[order])
        features = worker.ask(Request(Ask.STEP, tensors={"gradient": gradient})).tensors["features"]
        steps += 1
    trained = worker.ask(Request(Ask.TRAINED)).tensors
    check_trained(trained, trainable)
    order = permutation(len(x), seed, "evaluation order")
    evaluator_ready.result()
    evaluator.load(grading.checkpoints[0], seed=init)
    before = evaluator.ask(Request(Ask.FORWARD, {"profile": False}, {"x": x[order]})).tensors["y"]
    evaluator.ask(Request(Ask.ASSIGN, tensors=trained))
    after = evaluator.ask(Request(Ask.FORWARD, {"profile": False}, {"x": x[order]})).tensors["y"]
    problem = features_fail(before, x) or features_fail(after, x)
    if problem:
        case.score, case.message = 0.0, problem
        return
    progress, case.message = check_training(accuracy(before, head, labels[order]), accuracy(after, head, labels[order]), steps, bool(torch.isfinite(after).all()))
    case.score = round(case.max_score * progress, 2)


def permutation(n: int, seed: int, purpose: str) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, purpose)))


def features_fail(features: torch.Tensor, x: torch.Tensor) -> str:
    """Why `features` cannot be scored ("" if they can): one row of BigNet's width per input."""
    if features.shape != x.shape or not features.is_floating_point():
        return f"the model's features are {describe_tensor(features)}; expected float {tuple(x.shape)}"
    return ""


def accuracy(features: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (head(features.float()).argmax(dim=1) == labels).float().mean().item()


def loss_gradient(features: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """d(cross entropy of the head's logits)/d(features): all the worker needs to train, and no label."""
    features = features.detach().float().requires_grad_()
    loss = torch.nn.functional.cross_entropy(head(features), labels)
    return torch.autograd.grad(loss, features)[0]


def check_trained(trained: dict, trainable: dict) -> None:
    """The trained tensors must be the model's trainable parameters, as its load described them."""
    for name, tensor in trained.items():
        info = trainable.get(name)
        if info is None or tuple(tensor.shape) != info.shape or tensor.dtype != info.dtype:
            raise BadAnswer(f"its trained tensor {name[:60]!r} is not one of the model's trainable parameters")
    if trained.keys() != trainable.keys():
        raise BadAnswer("its trained tensors are not all of the model's trainable parameters")


def plan_cases(part: Part, suite: Suite) -> list[Case]:
    """The cases of `part` on `suite`, with their points: output and training points shared among their cases."""
    outputs = [output_name(suite, c, i) for c in range(len(suite.checkpoints)) for i in range(len(suite.inputs))]
    cases = [Case(name, part.points["output"] / len(outputs)) for name in outputs]
    cases += [Case(kind, float(points)) for kind, points in part.points.items() if kind in ("memory", "adapters")]
    if "training" in part.points:
        cases += [Case(training_name(suite, k), part.points["training"] / len(suite.train_seeds)) for k in range(len(suite.train_seeds))]
    return cases


def output_name(suite: Suite, c: int, i: int) -> str:
    """A case's name, which shows its weight family and batch size, never its seeds: hidden ones are secret."""
    which = [f"checkpoint {c + 1} {suite.checkpoints[c].family}"] if len(suite.checkpoints) > 1 else []
    which += [f"inputs {i + 1}: {suite.inputs[i].n}"] if len(suite.inputs) > 1 else []
    return f"output [{', '.join(which)}]" if which else "output"


def training_name(suite: Suite, k: int) -> str:
    return "training" if len(suite.train_seeds) == 1 else f"training [{k + 1}]"


def award(case: Case, passed: bool, message: str) -> None:
    case.score, case.message = (case.max_score if passed else 0.0), message


def check_output(y: torch.Tensor, reference: torch.Tensor, max_limit: float, mean_limit: float | None) -> tuple[bool, str, dict]:
    if y.shape != reference.shape or not y.is_floating_point():
        return False, f"the output is {describe_tensor(y)}; expected float {tuple(reference.shape)}", {}
    y = y.float()
    if not torch.isfinite(y).all():
        return False, "the output has NaN or inf values", {}
    diff = (y - reference).abs()
    diffs = {"max_diff": diff.max().item(), "mean_diff": diff.mean().item()}
    checks = [] if mean_limit is None else [at_most("mean abs diff", diffs["mean_diff"], mean_limit)]
    checks.append(at_most("max abs diff", diffs["max_diff"], max_limit))
    return summarize(checks) + (diffs,)


def near_limit(diffs: dict, max_limit: float, mean_limit: float | None) -> str:
    """A diff as close to its limit, either side, as hidden draws of a weight family move it: hidden cases may go the other way ("" if none is)."""
    for name, value, limit in (("max abs diff", diffs["max_diff"], max_limit), ("mean abs diff", diffs["mean_diff"], mean_limit)):
        if limit and limit / (1 + DRAW_SPREAD) < value < limit * (1 + DRAW_SPREAD):
            return f"{name} {value:.3g} is within {DRAW_SPREAD:.0%} of its limit {limit:.3g}, as much as hidden cases of this weight family vary: one may {'fail' if value <= limit else 'pass'}"
    return ""


def check_memory(part: Part, model: dict, forward: dict) -> tuple[bool, str]:
    checks = [at_most("theoretical", model["theoretical"], part.memory_limit, mb), at_most("allocated", model["allocated"], part.memory_limit, mb)]
    if model["resident"] is not None:  # the kernel's figures (Linux): what the process really holds, whatever the submission patched
        checks.append(at_most("resident", model["resident"], part.memory_limit + RESIDENT_SLACK, mb))
    checks.append(at_most("forward peak allocated", forward["peak"], FORWARD_LIMIT, mb))
    if "hwm" in forward:
        checks.append(at_most("forward peak resident", forward["hwm"], FORWARD_LIMIT, mb))
    if "read" in forward:
        checks.append(at_most("forward read from files", forward["read"], FORWARD_READ_LIMIT, mb))
    return summarize(checks)


def check_adapters(part: Part, model: dict, forward: dict) -> tuple[bool, str]:
    trainable, dtypes = model["trainable"], model["trainable_dtypes"]
    checks = [
        fewer_than("trainable parameters", trainable, part.max_trainable, millions, why=" (the course's grader's cap)"),
        at_least("trainable parameters", trainable, MIN_TRAINABLE, millions),
        (dtypes == ["float32"], f"trainable dtypes: {', '.join(dtypes) or 'none'} (float32 needed)"),
    ]
    return summarize(checks)


def check_training(start: float, final: float, steps: int, finite: bool) -> tuple[float, str]:
    """(progress from 0 to 1, message): the share of the way from the starting accuracy to the target."""
    target = TRAINING["target"]
    if not (math.isfinite(start) and math.isfinite(final)):
        return 0.0, "the accuracy is NaN"
    message = f"accuracy {start:.3f} -> {final:.3f} after {steps} steps (target {target} within {TRAINING['steps']} steps)"
    if not finite:
        return 0.0, f"the outputs became NaN or inf during training ({message})"
    return (1.0 if final >= target else max(0.0, min(1.0, (final - start) / (target - start)))), message


def at_most(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}") -> tuple[bool, str]:
    return value <= limit, f"{name} {show(value)} {'<=' if value <= limit else '>'} {show(limit)}"


def fewer_than(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}", why: str = "") -> tuple[bool, str]:
    return value < limit, f"{name} {show(value)} {'<' if value < limit else '>='} {show(limit)}{why}"


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
