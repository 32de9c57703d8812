"""
Grades one part of a submission in a fresh interpreter, which grader/sandbox.py starts and watches:

    python -E -B grader/child.py JOB_JSON

This is the only process that imports the submission. Before it does, it imports the grader's own
copy of the homework tools (the memory probe, the inputs, the training objective) under a private
package name, so the submission's `homework` package cannot stand in for them. It reports plain data
to the parent over a pipe: one JSON header line per message, then the message's payload (a tensor
saved with torch.save). At each `phase` it waits until the parent has read the kernel's memory
figures for this process: the submission can fake what this process says, but not those.

It imports nothing from grader/ (the folder is taken off sys.path first), so none of the grader's
module names can shadow a library that torch or the submission imports.
"""

import ctypes
import errno
import gc
import importlib
import importlib.util
import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path

TRUSTED = "_grader_homework"  # the grader's own homework package, under a name no submission uses
_LIBC = ctypes.CDLL(None)  # the C library, for prctl and malloc_trim (absent on macOS)


def import_private(name: str, package_dir: Path):
    """Import the package in `package_dir` under `name`; its modules then import as `name.module`."""
    spec = importlib.util.spec_from_file_location(name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


class Channel:
    """Messages to the parent (`send`), and phases at which the parent reads this process's memory (`phase`)."""

    def __init__(self, to_parent: int, from_parent: int):
        self.to_parent, self.from_parent = to_parent, from_parent

    def send(self, header: dict, payload: bytes = b"") -> None:
        data = json.dumps({**header, "size": len(payload)}).encode() + b"\n" + payload
        while data:
            data = data[os.write(self.to_parent, data) :]

    def phase(self, name: str, **facts) -> None:
        self.send({"kind": "phase", "phase": name, **facts})
        os.read(self.from_parent, 1)  # the parent's go-ahead, once it has read /proc/<pid>/status


def main(job: dict) -> None:
    channel = Channel(*job["fds"])
    die_with_parent()
    limit_resources(job["memory_cap"], job["output_cap"])
    import torch

    torch.set_num_threads(1)  # the same numbers whatever the machine's core count, and parts can run side by side
    import_private(TRUSTED, Path(job["homework"]))
    tools = {name: importlib.import_module(f"{TRUSTED}.{name}") for name in ("cli", "compare", "fit", "memory")}
    inputs = [tools["compare"].random_inputs(n, seed) for seed, n in job["inputs"]]
    warm_up(torch, tools["memory"])
    confine(job["workdir"])
    sys.path.insert(0, job["submission"])  # the folder that holds the submission's `homework` package
    try:
        grade(job, channel, torch, tools, inputs)
    except BaseException as e:  # the submission's own errors, sys.exit included
        channel.send({"kind": "error", "message": describe(e, job)})
        return
    channel.send({"kind": "done"})


def grade(job, channel, torch, tools, inputs) -> None:
    memory = tools["memory"]
    torch.manual_seed(0)  # whatever the submission initializes at random, the same every run
    settle()
    channel.phase("start")
    # The parent reads the resident growth from "start" to "loaded": the import is in it too (a float32
    # copy made at import time is still a float32 copy). No profiler runs in this span: it keeps memory
    # for every operation it watches, which would count as the model's. This model is the one scored.
    module = importlib.import_module(f"homework.{job['part']}")
    model = module.load(job["checkpoints"][0])
    check_module(torch, model)
    trainable, frozen = memory.parameter_counts(model)
    settle()
    channel.phase(
        "loaded",
        theoretical=memory.theoretical_bytes(model),
        trainable=trainable,
        frozen=frozen,
        trainable_dtypes=sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.requires_grad}),
    )

    for c, path in enumerate(job["checkpoints"]):
        if c > 0:
            del model
            model = module.load(path)
        for i, x in enumerate(inputs):
            with torch.no_grad(), memory.AllocationTrace() as trace:
                y = model(x)
            if c == 0 and i == 0:
                channel.phase("forward", peak=trace.peak)
            del trace
            channel.send({"kind": "output", "checkpoint": c, "inputs": i}, tensor_bytes(torch, y))
            del y

    # What PyTorch's allocators hand out for a second load, under the profiler. Where the kernel's
    # resident figure exists (Linux) it already bounds the scored model; this adds memory the kernel
    # has not paged in yet, and is the only measure where it does not exist (macOS).
    del model
    settle()
    with memory.AllocationTrace() as trace:
        model = module.load(job["checkpoints"][0])
    channel.send({"kind": "allocated", "bytes": trace.net})
    del trace

    for seed in job["train_seeds"]:
        del model
        settle()
        torch.manual_seed(seed)  # the adapters' random init
        model = module.load(job["checkpoints"][0])
        channel.send({"kind": "training", "seed": seed, **train(torch, tools, model, seed, job["training"])})


def train(torch, tools, model, seed: int, settings: dict) -> dict:
    x, labels, head = tools["fit"].noise_classification(settings["samples"], seed)
    with torch.no_grad():
        start = (head(model(x)).argmax(dim=1) == labels).float().mean().item()
    steps = []
    try:
        best = tools["fit"].fit(model, x, labels, head, steps=settings["steps"], lr=settings["lr"], stop_at=settings["target"], log=steps.append)
    except tools["cli"].UsageError as e:  # nothing to train
        return {"error": str(e)}
    with torch.no_grad():
        finite = bool(torch.isfinite(model(x)).all())  # a model gone NaN still scores chance accuracy: argmax picks a class
    return {"start": start, "best": best, "steps": len(steps), "finite": finite}


def check_module(torch, model) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"load() returned a {type(model).__name__}, not a torch.nn.Module")


def tensor_bytes(torch, y) -> bytes:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the forward pass returned a {type(y).__name__}, not a tensor")
    buffer = io.BytesIO()
    torch.save(y.detach().to("cpu", copy=True), buffer)  # a copy: no view of a larger storage, no subclass state
    return buffer.getvalue()


def limit_resources(memory_cap: int, output_cap: int) -> None:
    """Kernel-enforced limits (Linux; partly elsewhere). The parent also kills the child above `memory_cap` resident."""
    import resource

    for limit, value in ((resource.RLIMIT_DATA, memory_cap), (resource.RLIMIT_FSIZE, output_cap), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # macOS refuses some limits; the parent's checks still apply
            pass


def die_with_parent() -> None:
    """Linux: be killed when the grader's thread that started us ends (a Ctrl-C, a batch timeout), not run on alone."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def warm_up(torch, memory) -> None:
    """Run the profiler and the common kernels once, so their one-time setup is not counted as the model's memory."""
    layer = torch.nn.Linear(1024, 1024)
    with memory.AllocationTrace():
        layer(torch.ones(8, 1024)).sum().backward()
    torch.load(io.BytesIO(_saved(torch)), weights_only=True)


def _saved(torch) -> bytes:
    buffer = io.BytesIO()
    torch.save({"x": torch.ones(4)}, buffer)
    return buffer.getvalue()


def settle() -> None:
    """Free what is garbage and hand freed heap pages back to the kernel, so resident memory is live memory."""
    gc.collect()
    if hasattr(_LIBC, "malloc_trim"):  # glibc only
        _LIBC.malloc_trim(0)


# Audit events refused outright while the submission runs: processes, signals to other processes, sockets, limits.
REFUSED = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
    "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__", "resource.setrlimit", "resource.prlimit",
}  # fmt: skip
# Audit events that change the file system: which of their arguments are paths.
PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.link": (1,), "os.symlink": (1,),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
}  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def confine(workdir: str) -> None:
    """
    Best effort, in-process: Python's audit hooks (which cannot be removed once added) refuse writes
    outside `workdir`, new processes, signals and sockets. Code that calls C directly (ctypes) is not seen.
    """
    allowed = os.path.realpath(workdir) + os.sep

    def inside(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return True  # a file descriptor: opened before, or checked when it was opened
        real = os.path.realpath(os.fsdecode(path))
        return real == os.devnull or (real + os.sep).startswith(allowed)

    def hook(event: str, args: tuple) -> None:
        if event in REFUSED:
            raise PermissionError(f"{event} is not allowed while grading")
        if event == "open" and isinstance(args[2], int) and args[2] & WRITE_FLAGS and not inside(args[0]):
            raise PermissionError(f"writing {args[0]} is not allowed while grading (only the working folder is writable)")
        if event in PATH_EVENTS and not all(inside(args[i]) for i in PATH_EVENTS[event]):
            raise PermissionError(f"{event} outside the working folder is not allowed while grading")

    sys.addaudithook(hook)


def describe(error: BaseException, job: dict) -> str:
    """One line for the student: what went wrong, and where in their code."""
    if isinstance(error, NotImplementedError):
        return "not implemented"
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r})"
    if isinstance(error, OSError) and error.errno == errno.EFBIG:  # RLIMIT_FSIZE; Python ignores its signal
        return f"printed more than {job['output_cap'] / 2**20:g} MB (or wrote a file that large)"
    try:
        lines = str(error.msg if isinstance(error, SyntaxError) else error).strip().splitlines()
    except Exception:  # a submission's exception can fail even at this
        lines = ["(cannot be printed)"]
    if isinstance(error, MemoryError) or any("can't allocate memory" in line for line in lines):
        return f"ran out of memory (the limit is {job['memory_cap'] / 2**30:g} GB)"
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)]
    if isinstance(error, SyntaxError):
        frames.append((error.filename or "", error.lineno))
    frames = [(file, line) for file, line in frames if file.startswith(job["submission"])]
    where = f" ({os.path.relpath(frames[-1][0], job['submission'])}, line {frames[-1][1]})" if frames else ""
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300] + where


if __name__ == "__main__":
    del sys.path[0]  # grader/, see the docstring
    main(json.loads(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skips the interpreter's teardown, 0.4 s with torch loaded: the parent has everything
