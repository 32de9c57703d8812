"""
Grade a submission's homework package. This process is the trusted side: it decides what happens
and when, and scores only what it counts itself in the answers it receives. Each part's processes
(grader/part_runtime.py, started through part_process.py) run beside the other parts'; this
process computes the references meanwhile, asks one request at a time (protocol.py), and scores
the answers (checks.py).

Load in one process, answer in another. A loading process calls the part's load() on its own copy of
a checkpoint and answers with every parameter and buffer of the model, by name, as named bytes
(wire.py); then it is ended, and nothing of it survives (it could write no file, start no process).
An answering process calls load() on a decoy (the same names and shapes, values from a secret drawn
for this run), which fixes the model's tensor names, dtypes and trainable flags for every load (Pin),
gets the loaded tensors in place of its own, and only then sees inputs. So no process that sees an
input ever held the float32 weights, and the memory that scores is what this process counts in the
tensors it received, on every load: what load() kept elsewhere (a plain attribute, a Python number)
never reaches an answer.

A part whose process raises, hangs, crashes, exits, runs out of memory or breaks a rule scores 0,
with one line saying why; so does one the grader itself fails on. The other parts are graded as usual.
Within a part:
- output: all-or-nothing per case, against BigNet's outputs (reference.py);
- memory, adapters, training: only counted when the first output case passes (an empty model is
  small, and a plain Linear layer trains, but neither is BigNet), memory and adapters also for a
  lossy BigNet (within LOSSY times the limits); memory and adapters all-or-nothing;
- training: partial credit from BigNet's starting accuracy (computed here) to the target; a part's
  process computes gradients, the optimizer runs here, and the trained values' accuracy is measured
  in a fresh answering process that never saw the labels' gradients;
- extra credit: all-or-nothing for the whole part.
"""

import dataclasses
import mmap
import platform
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import (
    accuracy,
    check_adapters,
    check_memory,
    check_output,
    check_training,
    features_fail,
    is_lossy,
    loss_gradient,
    near_limit,
    time_warning,
)  # fmt: skip
from .confinement import SYSCALLS, landlock_abi
from .container import memory_limit, parts_side_by_side
from .launch import Uids, launcher, prepare, python_folders, return_freed_memory
from .part_process import PROTECTIONS, STOP, Budget, PartProcess
from .parts import LOSSY, MEMORY_CAP, OUTPUT_CAP, PART_NAMES, PARTS, TIMEOUT, TRAINING, WALL_FACTOR, GraderError, Kind, Part
from .protocol import Answer, BadAnswer, PartStopped, Stop, one_line, printable
from .reference import (
    BIGNET_LINEARS,
    bignet_features,
    checkpoint_path,
    first_departing_layer,
    layers_within,
    output_limits,
    reference_outputs,
    training_data,
    write_decoy,
)  # fmt: skip
from .results import Case, PartResult, Report
from .suite import PUBLIC, Suite, derived_seed
from .trusted import CHECKPOINT_DIR, HOMEWORK_DIR, adamw_step, has_reference, random_inputs
from .wire import Tensors, torch_name

PROBE = 16  # inputs on which a loading process's model and the answering process's are compared


class InvalidSubmission(GraderError):
    """A zip that cannot be graded (see grader/submission.py)."""


def grade_submission(path: str | Path, name: str | None = None, **options) -> Report:
    """
    Grade a submission zip or a homework package folder; `options` as for `grade`. Its report calls it
    `name` where this is a copy of the student's (batch mode, Gradescope), else by its own path.
    """
    path = Path(path)
    if not path.exists():
        raise GraderError(f"no such file or folder: {path}")
    if path.is_dir():
        report = grade(path, **options)
    else:
        from .submission import SubmissionError, extract_submission

        with tempfile.TemporaryDirectory(prefix="grader-zip-") as tmp:
            try:
                package = extract_submission(path, Path(tmp))
            except SubmissionError as e:
                raise InvalidSubmission(str(e)) from None
            report = grade(package, **options)
    report.submission = name or str(path.resolve())
    return report


@dataclass(frozen=True)
class Grading:
    """What every part of one grading run shares."""

    root: Path  # the grading folder (launch.prepare)
    kept: Path  # the grading process's own folder, where loaded models wait to be put in place
    suite: Suite
    checkpoints: tuple  # their files, in the order of suite.checkpoints
    references: dict
    uids: Uids
    launcher: object  # launch.launcher: how part processes are started
    timeout: float
    start_fields: dict  # what every part's process is told at START, beside its own folders
    for_credit: bool


def grade(
    package: str | Path,
    suite: Suite = PUBLIC,
    jobs: int | None = None,
    timeout: float = TIMEOUT,
    parts: tuple = (),
    hidden: str | Path | None = None,
    for_credit: bool | None = None,
    shared=None,
) -> Report:
    """
    Grade the homework package folder `package` on `suite` (read from the file `hidden`, if any); `parts`
    limits it to those part names. Grading for credit (by default, with hidden cases) refuses to start
    where the parts could reach what is secret (required_protections). `shared`: a launcher that
    grading runs one after another share (launch.shared_launcher), else the run starts its own.
    """
    started = time.monotonic()
    package = Path(package).resolve()
    if not (package / "__init__.py").is_file():
        raise GraderError(f"{package} is not a homework package folder (no __init__.py)")
    selected = [part for part in PARTS if not parts or part.name in parts]
    if parts and len(selected) != len(set(parts)):
        raise GraderError(f"unknown part in {', '.join(parts)}; choose from: {', '.join(p.name for p in PARTS)}")
    for_credit = hidden is not None if for_credit is None else for_credit
    # Parts side by side are processes alive at once: a loading process, which holds the weights, could talk to another
    # part's answering process through the kernel (a lock, a futex, the clock). For credit, one process at a time.
    if for_credit and (jobs or 1) > 1:
        raise GraderError("grading for credit runs one part at a time; to use more cores, grade submissions side by side (batch --jobs)")
    return_freed_memory()
    uids = Uids()
    try:
        if for_credit:
            refuse_unless_protected(uids, landlock_abi() >= 1, seccomp_available())
        references = reference_outputs(suite)
        checkpoints = tuple(checkpoint_path(c) for c in suite.checkpoints)
        private = [CHECKPOINT_DIR, HOMEWORK_DIR, package, *checkpoints, *([Path(hidden)] if hidden else [])]
        readable, path = python_folders(private)
        start_fields = {
            "written": [f"{name}.py" for name in PART_NAMES],  # the files a student writes: where a failure is told to be
            "readable": readable,
            "path": path,
            "memory_cap": MEMORY_CAP,
            "output_cap": OUTPUT_CAP,
            "protections": list(PROTECTIONS),
        }
        with tempfile.TemporaryDirectory(prefix="grader-") as tmp, tempfile.TemporaryDirectory(prefix="grader-kept-") as kept:
            prepare(Path(tmp), package, write_decoy, uids.group)
            start_parts = shared or launcher(Path(tmp))
            grading = Grading(Path(tmp), Path(kept), suite, checkpoints, references, uids, start_parts, timeout, start_fields, for_credit)
            order = sorted(selected, key=lambda part: part.cpu_seconds, reverse=True)  # the slowest first: the last to finish is short
            with ThreadPoolExecutor(1 if for_credit else jobs or parts_side_by_side(len(selected))) as pool:
                try:
                    runs = {part.name: pool.submit(grade_part, part, grading) for part in order}
                    results = {name: run.result() for name, run in runs.items()}
                    # A part the system killed, as when memory runs out (its own, or with other parts' beside it), once more alone.
                    for part in order:
                        if results[part.name].stop is Stop.KILLED:
                            results[part.name] = grade_part(part, grading, last_try=True)
                except KeyboardInterrupt:
                    STOP.set()  # the part processes run in their own sessions: Ctrl-C reaches only us
                    raise
                finally:
                    if not shared:
                        start_parts.close()
    finally:
        uids.close()
    sandbox = {"separate users": uids.note if uids.separate else f"unavailable: {uids.note}"}
    sandbox.update(dict.fromkeys(PROTECTIONS, "not set up: no part's process got that far"))
    sandbox.update(next((r.protections for r in results.values() if r.protections), {}))
    killed = [part.title for part in selected if results[part.name].stop is Stop.KILLED]
    notes = [out_of_memory(killed)] if killed else []
    return Report(str(package), [results[part.name] for part in selected], time.monotonic() - started, sandbox, notes)


def out_of_memory(titles: list[str]) -> str:
    """For the staff: which parts could not be graded because memory ran out, and what to do about it."""
    limit = memory_limit()
    where = f"the container's memory ({limit / 2**20:.0f} MB)" if limit else "this machine's memory"
    fix = "give the autograder more memory (Gradescope: Autograder Settings)" if limit else "close other programs"
    return f"{where} ran out while grading {', '.join(titles)}, twice: {fix}, and grade the submission again"


def seccomp_available() -> bool:
    return platform.system() == "Linux" and platform.machine().lower() in SYSCALLS


def credit_lacks(seccomp: bool, landlock: bool, separate_users: bool) -> list[str]:
    """
    What grading for credit needs and lacks: seccomp (no file written, no process started, no signal to
    another), and Landlock or users of their own (no file of the grader's or of another run read).
    Without them a part could read the hidden cases, or leave data for a later process.
    """
    return ([] if seccomp else ["seccomp"]) + ([] if landlock or separate_users else ["Landlock"])


def refuse_unless_protected(uids: Uids, landlock: bool, seccomp: bool) -> None:
    """Before grading for credit: refuse, in one line, where this system cannot give the parts what credit_lacks names."""
    why = {
        "seccomp": "seccomp (Linux on x86_64 or aarch64)",
        "Landlock": f"Landlock (Linux 5.13+) or a user of their own for the parts ({uids.note})",
    }
    missing = [why[name] for name in credit_lacks(seccomp, landlock, uids.separate)]
    if missing:
        raise GraderError(
            f"cannot grade for credit here: the parts would run without {' and without '.join(missing)}; the public self-check still runs"
        )


def required_protections(protections: dict, grading: Grading) -> None:
    """A part's process that could not set up what grading for credit needs stops the whole grade (fail closed)."""

    def working(name: str) -> bool:
        return not protections.get(name, "unavailable").startswith(("unavailable", "not asked"))

    missing = credit_lacks(working("seccomp"), working("Landlock"), grading.uids.separate)
    if grading.for_credit and missing:
        raise GraderError(
            f"cannot grade for credit here: a part's process could not set up {', '.join(f'{name} ({protections.get(name)})' for name in missing)}"
        )


def grade_part(part: Part, grading: Grading, last_try: bool = False) -> PartResult:
    """
    Every case of `part`, scored; a part whose process stops scores 0 on all of them, for one reason. A
    part the system killed (Stop.KILLED) is tried again, alone (grade); on the `last_try`, its reason
    tells the student it was not graded, rather than that their code failed.
    """
    started = time.monotonic()
    result = PartResult(part, plan_cases(part, grading.suite))
    budget = Budget(grading.timeout, WALL_FACTOR * grading.timeout)
    processes: list[PartProcess] = []

    def new_process() -> PartProcess:
        processes.append(PartProcess(part.name, grading.root, budget, grading.uids.take(), grading.launcher, grading.start_fields))
        return processes[-1]

    try:
        score_part(result, grading, new_process)
    except PartStopped as stopped:
        result.stop, result.reason = stopped.stop, stopped.reason
        if stopped.stop is Stop.KILLED and last_try:
            result.reason = (
                "not graded: the system killed this part's process twice, as it does when the machine grading it runs out of memory;"
                " the grader's own limits were not reached, so this says nothing of your code"
            )
    except GraderError:
        raise
    except Exception as e:  # the grader's own failure, on this part alone: the others are graded as usual
        traceback.print_exc(file=sys.stderr)
        result.stop, result.reason = (
            Stop.GRADER_FAILED,
            one_line(f"the grader failed on this part ({type(e).__name__}: {e}): tell the course staff"),
        )
    finally:
        for process in processes:
            process.end()
    if result.stop:
        for case in result.cases:
            case.score, case.message = 0.0, result.reason
    result.output = printable("\n".join(p.output() for p in processes).strip())
    result.protections = next((p.protections for p in processes if p.protections), {})
    result.seconds, result.cpu_seconds = time.monotonic() - started, budget.used if budget.measured else None
    warning = result.stop is None and time_warning(
        result.figures.get("products", {}), budget.used, budget.cpu_limit, result.figures.get("slowest", "")
    )
    if warning:
        result.warnings.insert(0, warning)
    return result


@dataclass(frozen=True)
class Loaded:
    """
    What a loading process's load() made: its tensors' dtypes and shapes (specs), kept as bytes in a
    file of the grading process's own until they are put in place, never decoded here; which are
    trainable; and the model's output on the probe inputs.
    """

    file: Path
    specs: dict  # name -> wire.Spec
    trainable: list
    probe: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        """The model's memory: each tensor's element count times its element size, which is all it can carry."""
        return sum(spec.nbytes for spec in self.specs.values())


@dataclass(frozen=True)
class Pin:
    """
    What every load of a part must make, whatever the weights: the names and dtypes of the model's
    tensors, and which are trainable. load() on the decoy sets it, in the first answering process,
    before any process that answers has seen a loaded tensor: it cannot depend on the weights.
    """

    dtypes: dict  # name -> safetensors' dtype name
    trainable: frozenset


def load_elsewhere(process: PartProcess, checkpoint: Path, grading: Grading, probe: torch.Tensor | None = None) -> Loaded:
    """
    load() on `checkpoint` in `process`, which is then ended: all that comes out of it is the model's
    tensors, and (with `probe`) its output on those inputs, to tell a model that does not survive the round trip.
    """
    with process:
        required_protections(process.start(), grading)
        loaded = kept(process.load(checkpoint, send=True), grading.kept / f"{process.folder.name}.safetensors")
        if probe is not None:
            try:
                loaded = dataclasses.replace(loaded, probe=process.forward(probe).tensors.tensor("y"))
            except PartStopped as stopped:
                if stopped.stop != Stop.RAISED:
                    raise
                # it raised: the answering process will raise too, and say so in the output case
    return loaded


def kept(answer: Answer, file: Path) -> Loaded:
    """A loading process's answer, checked and saved to `file`: its bytes are let go of before anything else is asked."""
    tensors, trainable = answer.tensors, answer.fields["trainable"]
    if answer.fields["dtypes"] != tensors.dtypes() or not set(trainable) <= tensors.specs.keys():
        raise BadAnswer("its answer to load does not hold the tensors it names")
    tensors.save(file)
    return Loaded(file, tensors.specs, trainable, None)


def answering(process: PartProcess, grading: Grading, pin: Pin | None = None) -> Pin:
    """Start `process` as an answering one: load() on the decoy, which must make the model `pin` says (if given). Returns its pin."""
    required_protections(process.start(), grading)
    answer = process.load(grading.root / "decoy" / "checkpoint.pth", send=False)
    made = Pin(answer.fields["dtypes"], frozenset(answer.fields["trainable"]))
    if not made.trainable <= made.dtypes.keys():
        raise BadAnswer("its answer to load names trainable tensors the model does not have")
    if pin is not None and made != pin:
        raise PartStopped(
            Stop.REFUSED,
            one_line(f"load() on the same weights builds another model in another process: {pin_differs(made, pin, 'here', 'there')}"),
        )
    return made


def put_in_place(process: PartProcess, loaded: Loaded, pin: Pin) -> None:
    """The loaded tensors in place of the answering model's, if they are the ones the pin says."""
    made = Pin({name: spec.dtype for name, spec in loaded.specs.items()}, frozenset(loaded.trainable))
    if made != pin:
        raise PartStopped(
            Stop.REFUSED,
            one_line(
                f"load() builds another model for other weights of the same shapes: {pin_differs(made, pin, 'for these weights', 'for others')};"
                " it must build tensors of the same names, dtypes and trainable flags whatever the weights' values"
            ),
        )
    process.replace(loaded.file, loaded.trainable)


def pin_differs(made: Pin, pin: Pin, here: str, there: str) -> str:
    """The first tensor in which `made` is not what `pin` says, in words: `here` is where `made` was made, `there` the pin."""
    for name in sorted(made.dtypes.keys() | pin.dtypes.keys()):
        if name not in pin.dtypes or name not in made.dtypes:
            return f"{name} is there {here if name in made.dtypes else there} and not {there if name in made.dtypes else here}"
        if made.dtypes[name] != pin.dtypes[name]:
            return f"{name} is {torch_name(made.dtypes[name])} {here} and {torch_name(pin.dtypes[name])} {there}"
    name = sorted(made.trainable ^ pin.trainable)[0]
    return f"{name} is trainable {here if name in made.trainable else there} and not {there if name in made.trainable else here}"


def score_part(result: PartResult, grading: Grading, new_process) -> None:
    """
    Load each checkpoint in a process of its own; answer in another; then train in another, and evaluate
    in a fresh one. One part's process at a time, so that a part takes no more memory than its largest
    process: Gradescope's default container has 768 MB for everything.
    """
    part, suite = result.part, grading.suite
    cases = {case.name: case for case in result.cases}
    limits = output_limits(part, suite)
    batches = [random_inputs(inputs.n, inputs.seed) for inputs in suite.inputs]
    probe = batches[0][:PROBE]
    # Only the first checkpoint's model is compared after the round trip (round_trip): only its loading process runs the probe.
    loads = [load_elsewhere(new_process(), path, grading, probe if c == 0 else None) for c, path in enumerate(grading.checkpoints)]
    lossy = False  # the first output case, failed, within LOSSY times its limits
    with new_process() as answerer:
        pin = answering(answerer, grading)
        for c, loaded in enumerate(loads):
            put_in_place(answerer, loaded, pin)
            if c > 0:
                loaded.file.unlink()  # in place: not needed again (the first is trained, below)
            for i, (inputs, x) in enumerate(zip(suite.inputs, batches)):
                checkpoint = suite.checkpoints[c]
                first = c == 0 and i == 0
                answer = answerer.forward(x, profile=first)  # the first also counts its matrix products by dtype (time_warning)
                if first:
                    result.figures["products"], result.figures["slowest"] = answer.fields["products"], one_line(answer.fields["slowest"])
                y = answer.tensors.tensor("y")
                passed, message, diffs = check_output(y, grading.references[checkpoint, inputs], *limits[checkpoint, inputs])
                award(cases[output_name(suite, c, i)], passed, message)
                close = diffs and near_limit(diffs, *limits[checkpoint, inputs])
                where = ""
                if first:
                    result.figures.update(diffs)
                    # What each of its BigNet layers computes: where a miss (or a near miss) departs, and whether a miss is a lossy BigNet.
                    layers = watched_layers(answerer, probe) if not passed or close else {}
                    max_limit = limits[checkpoint, inputs][0]
                    lossy = (
                        not passed and is_lossy(diffs, *limits[checkpoint, inputs]) and layers_within(layers, checkpoint, LOSSY * max_limit)
                    )
                    where = departure(layers, part, checkpoint, near=passed)
                    if not passed:
                        cases[output_name(suite, c, i)].message += where + round_trip(answerer, loaded, probe)
                if close:  # a failed case's message says where already
                    result.warnings.append(f"{output_name(suite, c, i)}: {close}{where if passed else ''}")
    # Counted on every load, the largest: a load that makes a smaller model for some weights gains nothing.
    result.figures["memory"] = max(loaded.nbytes for loaded in loads)
    if not loads[0].trainable:
        result.warnings.append(
            "nothing in the model is trainable: the course's grader measures a backward pass and fails such a model (keep the LayerNorms trainable)"
        )
    output_passed = cases[output_name(suite, 0, 0)].score > 0
    most_trainable = max(loads, key=lambda loaded: sum(loaded.specs[name].numel for name in loaded.trainable))
    counted = {
        Kind.MEMORY: lambda: check_memory(part, result.figures["memory"]),
        Kind.ADAPTERS: lambda: check_adapters(part, most_trainable.specs, most_trainable.trainable),
    }
    for case in result.cases:
        if case.kind in counted:
            passed, message = counted[case.kind]()
            if lossy:
                message += f" (counted: the output misses BigNet's, but it and each of BigNet's layers are within {LOSSY} times its limits, as a lossy BigNet's are)"
            elif not output_passed:
                off = (
                    f", nor is it a lossy BigNet (within {LOSSY} times its limits, and each of its layers)"
                    if "max_diff" in result.figures
                    else ""
                )
                message = f"not counted, the output does not match BigNet's{off} ({message})"
            award(case, passed and (output_passed or lossy), message)
    training = [case for case in result.cases if case.kind is Kind.TRAINING]
    for case, seed in zip(training, suite.train_seeds):
        if not output_passed:
            case.score, case.message = 0.0, "not counted, the output does not match BigNet's"
            continue
        score_training(case, grading, seed, pin, loads[0], new_process)
    loads[0].file.unlink()


def watched_layers(answerer: PartProcess, x: torch.Tensor) -> dict:
    """What goes in and out of each of the answering model's modules named as BigNet's Linear layers, for x ({} if they raise when watched)."""
    try:
        answered = answerer.layers(x, list(BIGNET_LINEARS))
    except PartStopped as stopped:
        if stopped.stop != Stop.RAISED:
            raise
        return {}  # its modules raised when watched: the output case already says what counts
    return {name: answered.tensor(name) for name in answered.specs}


def departure(layers: dict, part: Part, checkpoint, near: bool = False) -> str:
    """
    Where the model whose `layers` these are departs from BigNet's (reference.first_departing_layer, for a
    `near` miss too); "" if it cannot say: nothing watched, no reference solution beside the grader (a
    student's checkout), or a near miss of a part whose scheme is not the reference's own (the extra credit's is any).
    """
    if not layers or not has_reference() or (near and part.name != part.scheme):
        return ""
    return first_departing_layer(layers, part.scheme, checkpoint, near)


def round_trip(answerer: PartProcess, loaded: Loaded, x: torch.Tensor) -> str:
    """Whether the model load() returned and the one given its parameters and buffers compute the same: "" if they do."""
    if loaded.probe is None:
        return ""
    y = answerer.forward(x).tensors.tensor("y")
    same_kind = y.shape == loaded.probe.shape and y.dtype == loaded.probe.dtype  # torch.equal raises on two dtypes (float8 and float32)
    if same_kind and torch.equal(y, loaded.probe):
        return ""
    diff = (y.float() - loaded.probe.float()).abs().max().item() if y.shape == loaded.probe.shape else float("nan")
    return (
        f"; given the parameters and buffers load() made, the model computes other outputs than the model load() returned (max abs diff {diff:.3g}):"
        " it keeps something computed from the weights elsewhere (a plain attribute, a Python number), which grading does not carry over; register it (register_buffer)"
    )


def score_training(case: Case, grading: Grading, seed: int, pin: Pin, graded: Loaded, new_process) -> None:
    """
    Train the graded model (the first checkpoint's load) in a process of its own, which gets the inputs
    and, each step, the gradient of the loss with respect to its features: never the labels or the
    head, which stay here. It answers with its parameters' gradients; the optimizer runs here, on the
    trainable tensors the load made, and puts their new values in place before the next step. So the
    trained values are AdamW's, computed here from gradients: whatever the process writes into its
    own parameters is replaced. They then go to a fresh answering process, which answers with features
    for the inputs in another order; the accuracy is computed here. The starting accuracy is BigNet's
    own (the model passed the output cases against BigNet): a model asked for its features before
    training could answer worse than it is, to make its progress look larger.
    """
    count = sum(graded.specs[name].numel for name in graded.trainable)
    if not count:
        case.score, case.message = 0.0, "the model has no trainable parameters: there is nothing to train"
        return
    if count > TRAINING.max_parameters:
        case.score = 0.0
        case.message = (
            f"not trained: {count / 1e6:.2f} M trainable parameters, more than the {TRAINING.max_parameters / 1e6:.0f} M the grader trains"
            " (it holds the optimizer's state): freeze what is not an adapter (requires_grad=False)"
        )
        return
    x, labels, head = training_data(TRAINING.samples, seed)
    order = permutation(len(x), seed, "training order")
    values, states = trainable_values(graded), {name: {} for name in graded.trainable}
    with new_process() as trainer:
        answering(trainer, grading, pin)
        put_in_place(trainer, graded, pin)
        features = trainer.train(x[order])
        steps = 0
        while steps < TRAINING.steps and not features_fail(features, x) and accuracy(features, head, labels[order]) < TRAINING.target:
            gradients = trainer.backward(
                loss_gradient(features, head, labels[order]), {name: graded.specs[name] for name in graded.trainable}
            )
            for name in gradients.specs:  # a tensor without a gradient is left as it is, as torch.optim does
                adamw_step(values[name], gradients.tensor(name), states[name], TRAINING.lr)
            trainer.replace(values, graded.trainable)
            features = trainer.train(x[order])
            steps += 1
    order = permutation(len(x), seed, "evaluation order")
    with new_process() as evaluator:
        answering(evaluator, grading, pin)
        put_in_place(evaluator, graded, pin)
        evaluator.replace(values, graded.trainable)
        after = evaluator.forward(x[order]).tensors.tensor("y")
    problem = features_fail(after, x)
    if problem:
        case.score, case.message = 0.0, problem
        return
    before = bignet_features(grading.suite.checkpoints[0], x)
    progress, case.message = check_training(
        accuracy(before, head, labels), accuracy(after, head, labels[order]), steps, bool(torch.isfinite(after).all())
    )
    case.score = round(case.max_score * progress, 2)


def trainable_values(loaded: Loaded) -> dict:
    """The load's trainable tensors, read from its file (mapped: only their pages are read)."""
    with open(loaded.file, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        tensors = Tensors.parse(mapped)
        values = {name: tensors.tensor(name) for name in loaded.trainable}
        del tensors  # its view of the mapping, which must go before the mapping closes
    return values


def permutation(n: int, seed: int, purpose: str) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, purpose)))


def plan_cases(part: Part, suite: Suite) -> list[Case]:
    """The cases of `part` on `suite`, with their points: output and training points shared among their cases."""
    outputs = [output_name(suite, c, i) for c in range(len(suite.checkpoints)) for i in range(len(suite.inputs))]
    cases = [Case(name, Kind.OUTPUT, part.points[Kind.OUTPUT] / len(outputs)) for name in outputs]
    cases += [Case(kind.value, kind, float(points)) for kind, points in part.points.items() if kind in (Kind.MEMORY, Kind.ADAPTERS)]
    if Kind.TRAINING in part.points:
        cases += [
            Case(training_name(suite, k), Kind.TRAINING, part.points[Kind.TRAINING] / len(suite.train_seeds))
            for k in range(len(suite.train_seeds))
        ]
    return cases


def output_name(suite: Suite, c: int, i: int) -> str:
    """A case's name, which shows its weight family and batch size, never its seeds: hidden ones are secret."""
    which = [f"checkpoint {c + 1} {suite.checkpoints[c].family}"] if len(suite.checkpoints) > 1 else []
    which += [f"inputs {i + 1}: {suite.inputs[i].n}"] if len(suite.inputs) > 1 else []
    return f"{Kind.OUTPUT.value} [{', '.join(which)}]" if which else Kind.OUTPUT.value


def training_name(suite: Suite, k: int) -> str:
    return Kind.TRAINING.value if len(suite.train_seeds) == 1 else f"{Kind.TRAINING.value} [{k + 1}]"


def award(case: Case, passed: bool, message: str) -> None:
    case.score, case.message = (case.max_score if passed else 0.0), message
