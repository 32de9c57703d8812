"""
A part's process: the only one that imports the submission. grader/sandbox.py starts it from a copy
of this folder's runtime files (this one, protocol.py, confinement.py and homework/memory.py, side
by side in the grading folder), as a fork of a template process that has imported torch (Linux), or
as an interpreter of its own (macOS):

    python -E -B runtime/worker.py --template CONTROL_FD     # one per grading run: forks the workers
    python -E -B runtime/worker.py REQUESTS_FD ANSWERS_FD    # one worker

It answers requests, one at a time, and decides nothing: what to ask, and what the answers are
worth, is the grading process's business (grade.py). The first request, START, tells it where the
submission is and what it may read and write; it confines itself (confinement.py) and warms up
before the submission is imported, which happens in the first LOAD. All it holds at any moment is
the model and the tensors of the request in hand.
"""

import ctypes
import errno
import faulthandler
import gc
import importlib
import os
import signal
import sys
import traceback

import confinement  # the runtime files beside this one, found through sys.path[0]
import memory
import protocol
import torch
from protocol import Ask
from torch.overrides import TorchFunctionMode

del sys.path[0]  # nothing in the runtime folder may shadow what torch or the submission imports
_LIBC = ctypes.CDLL(None)  # the C library, for prctl and malloc_trim (absent on macOS)


class Part:
    """The state between requests: the part's module and its model, and what training keeps."""

    def __init__(self, start: dict):
        self.name, self.submission = start["part"], start["submission"]
        self.module = self.model = self.optimizer = self.x = self.features = None

    def load(self, path: str, seed: int) -> dict:
        self.model = self.optimizer = self.features = None
        torch.manual_seed(seed)  # whatever the submission initializes at random, the same every run
        if self.module is None:
            self.module = importlib.import_module(f"homework.{self.name}")
        self.model = self.module.load(path)
        if not isinstance(self.model, torch.nn.Module):
            raise TypeError(f"load() returned a {type(self.model).__name__}, not a torch.nn.Module")
        settle()  # the grading process reads this process's memory once it has the answer
        return {"tensors": [info.encode() for info in describe_tensors(self.model)]}

    def forward(self, x: torch.Tensor, profile: bool) -> tuple[dict, dict]:
        if not profile:
            with torch.no_grad():
                return {"peak": 0, "products": {}}, {"y": plain_tensor(self.model(x))}
        with torch.no_grad(), memory.AllocationTrace() as trace, MatrixProducts() as products:
            y = self.model(x)
        return {"peak": trace.peak, "products": products.counts}, {"y": plain_tensor(y)}

    def layers(self, x: torch.Tensor, names: list) -> dict:
        """The input and output of each of the model's modules named in `names`, for `x`: where its output departs from BigNet's."""
        captured = {}

        def keep(name: str):
            return lambda module, inputs, output: captured.update({f"{name} in": plain_tensor(inputs[0]), f"{name} out": plain_tensor(output)})

        hooks = [module.register_forward_hook(keep(name)) for name, module in self.model.named_modules() if name in names]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        return captured

    def profiled_load(self, path: str, seed: int) -> dict:
        self.model = None
        settle()
        with memory.AllocationTrace() as trace:
            self.load(path, seed)
        return {"allocated": trace.net}

    def train(self, x: torch.Tensor, lr: float) -> dict:
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr)
        self.x = x
        self.features = self.model(x)
        return {"features": plain_tensor(self.features)}

    def step(self, gradient: torch.Tensor) -> dict:
        self.optimizer.zero_grad()
        self.features.backward(gradient.to(self.features.dtype))
        self.optimizer.step()
        self.features = self.model(self.x)
        return {"features": plain_tensor(self.features)}

    def trained(self) -> dict:
        self.optimizer = self.features = self.x = None
        return {name: plain_tensor(p) for name, p in self.model.named_parameters() if p.requires_grad}

    def assign(self, tensors: dict) -> None:
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in tensors.items():
                parameters[name].copy_(tensor)

    def answer(self, ask: Ask, fields: dict, tensors: dict) -> tuple[dict, dict]:
        if ask == Ask.LOAD:
            return self.load(fields["path"], fields["seed"]), {}
        if ask == Ask.FORWARD:
            return self.forward(tensors["x"], fields["profile"])
        if ask == Ask.LAYERS:
            return {}, self.layers(tensors["x"], fields["names"])
        if ask == Ask.PROFILED_LOAD:
            return self.profiled_load(fields["path"], fields["seed"]), {}
        if ask == Ask.TRAIN:
            return {}, self.train(tensors["x"], fields["lr"])
        if ask == Ask.STEP:
            return {}, self.step(tensors["gradient"])
        if ask == Ask.TRAINED:
            return {}, self.trained()
        self.assign(tensors)
        return {}, {}


class MatrixProducts(TorchFunctionMode):
    """
    Counts the multiply-adds of the matrix products a forward pass asks for, by dtype: where a CPU spends
    a slow part's time (float16 products are 15 to 20 times slower there than float32 ones).
    """

    # Each product a @ b, and which dimension of b holds its outputs: linear(x, weight) is x @ weight.T.
    OUTPUTS = {torch.nn.functional.linear: 0, **dict.fromkeys((torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm), -1)}

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.OUTPUTS and len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.dim() > 0 for a in args[:2]):
            a, b = args[:2]
            dtype = str(a.dtype).removeprefix("torch.")
            self.counts[dtype] = self.counts.get(dtype, 0) + a.numel() * b.shape[self.OUTPUTS[func]]
        return func(*args, **(kwargs or {}))


def describe_tensors(model: torch.nn.Module) -> list[protocol.TensorInfo]:
    """The model's parameters and buffers (a tensor shared under two names once), for the grading process to count."""
    described, seen = [], set()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            described.append(protocol.TensorInfo(name, tuple(t.shape), t.dtype, t.requires_grad))
    return described


def plain_tensor(y) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the forward pass returned a {type(y).__name__}, not a tensor")
    return y.detach().to("cpu", copy=True)  # a copy: no view of a larger storage, no subclass state


def main(requests: int, answers: int) -> None:
    start, _ = protocol.read_message(requests)  # START: where the submission is, what the process may read and write
    die_with_parent()
    if protocol.STACK_SIGNAL is not None:
        faulthandler.register(protocol.STACK_SIGNAL, all_threads=True)  # to our output, which the grading process reads
    limit_resources(start["memory_cap"], start["output_cap"])
    torch.set_num_threads(1)  # the same numbers whatever the machine's core count, and parts can run side by side
    protections = confine(start)
    warm_up(start["writable"][0])
    sys.path.insert(0, start["submission"])  # the folder that holds the submission's `homework` package
    write_all(answers, protocol.encode({"nonce": start["nonce"], "protections": protections}))
    part = Part(start)
    while True:
        try:
            header, payload = protocol.read_message(requests)
        except EOFError:
            return
        try:
            fields, tensors = part.answer(Ask(header["ask"]), header, protocol.decode_tensors(payload))
            message = protocol.encode({"nonce": header["nonce"], **fields}, tensors)
        except BaseException as e:  # the submission's own errors, sys.exit included
            message = protocol.encode({"nonce": header["nonce"], "error": describe(e, start)})
        write_all(answers, message)


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def confine(start: dict) -> dict:
    """Every protection this system offers, strongest first; {protection: what it achieved, or why it is unavailable}."""
    readable = allowed_folders(start)
    steps = (
        ("no new privileges", lambda: confinement.no_new_privs() or "on"),
        ("Landlock", lambda: f"ABI {confinement.restrict_files(readable, start['writable'])}"),
        ("seccomp", lambda: f"{len(confinement.forbid_syscalls())} system calls refused"),
    )
    protections = {}
    for name, step in steps:
        if name not in start["protections"]:
            protections[name] = "not asked for"
            continue
        try:
            protections[name] = step()
        except (confinement.Unavailable, OSError) as e:
            protections[name] = f"unavailable: {e}"
    audit_hooks(start["writable"][0])
    return protections


def allowed_folders(start: dict) -> list[str]:
    """
    What the process may read: the grading folders it was given, Python and its packages, the system's
    libraries and configuration; never a folder that holds, or lies in, one of the grader's private
    paths (its checkpoints, its homework package, the hidden configuration). Such a folder also leaves
    sys.path, so that nothing in it can be imported either.
    """
    system = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/share", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev"]
    candidates = {os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *system] if os.path.exists(p)}
    private = [os.path.realpath(p) for p in start["private"]]

    def overlaps(path: str) -> bool:
        return any(path == p or path.startswith(p + os.sep) or p.startswith(path + os.sep) for p in private)

    safe = sorted(p for p in candidates if not overlaps(p))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) in safe or not os.path.exists(p)]
    return start["readable"] + safe


def limit_resources(memory_cap: int, output_cap: int) -> None:
    """Kernel-enforced limits (Linux; partly elsewhere). The grading process also kills the part above `memory_cap` resident."""
    import resource

    for limit, value in ((resource.RLIMIT_DATA, memory_cap), (resource.RLIMIT_FSIZE, output_cap), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # macOS refuses some limits; the grading process's checks still apply
            pass


def die_with_parent() -> None:
    """Linux: be killed when the grader's thread that started us ends (a Ctrl-C, a batch timeout), not run on alone."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def warm_up(workdir: str) -> None:
    """
    Do once what a load and a forward do, with the profiler on, and import what the
    homework's given files import, so that none of their one-time setup counts as the model's memory.
    """
    for name in ("fire", "numpy"):  # the homework's requirements
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    layer = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.LayerNorm(1024))
    path = os.path.join(workdir, "warm-up.pth")
    torch.save(layer[1].state_dict(), path)  # small: files are capped at the output limit
    layer[1].load_state_dict(torch.load(path, weights_only=True))
    os.remove(path)
    with memory.AllocationTrace():
        layer(torch.ones(8, 1024)).sum().backward()
    with torch.no_grad(), memory.AllocationTrace(), MatrixProducts():
        layer(torch.ones(8, 1024))
    protocol.decode_tensors(protocol.encode({}, {"x": torch.ones(4)}).split(b"\n", 1)[1])
    settle()


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


def audit_hooks(workdir: str) -> None:
    """
    In-process, where the kernel offers nothing (macOS, old kernels), and for clearer errors where it
    does: Python's audit hooks, which cannot be removed once added, refuse writes outside `workdir`,
    new processes, signals and sockets. Code that calls C directly (ctypes) is not seen by them.
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


def describe(error: BaseException, start: dict) -> str:
    """One line for the student: what went wrong, and where in their code."""
    if isinstance(error, NotImplementedError):
        return "not implemented"
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r})"
    if isinstance(error, OSError) and error.errno == errno.EFBIG:  # RLIMIT_FSIZE; Python ignores its signal
        return f"printed more than {start['output_cap'] / 2**20:g} MB (or wrote a file that large)"
    try:
        lines = str(error.msg if isinstance(error, SyntaxError) else error).strip().splitlines()
    except Exception:  # a submission's exception can fail even at this
        lines = ["(cannot be printed)"]
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)]
    if isinstance(error, SyntaxError):
        frames.append((error.filename or "", error.lineno))
    frames = [(file, line) for file, line in frames if file.startswith(start["submission"])]
    where = f" ({os.path.relpath(frames[-1][0], start['submission'])}, line {frames[-1][1]})" if frames else ""
    if isinstance(error, MemoryError) or any("can't allocate memory" in line for line in lines):
        return f"ran out of memory (the limit is {start['memory_cap'] / 2**30:g} GB)" + where
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300] + where


def template(control: int) -> None:
    """
    Fork a worker for each request on the `control` socket (sandbox.Template), and reap the ended ones
    when asked. This process imports what every worker needs and runs nothing else: no submission, no
    tensor operation (which would start threads, and a fork keeps only the thread that calls it).
    """
    import json
    import socket

    for name in ("fire", "numpy"):  # the homework's requirements, imported once for every worker
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    channel = socket.socket(fileno=control)
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 64 * 1024, 3)
        if not message:
            return
        request = json.loads(message)
        if request["ask"] == "reap":
            _, status = os.waitpid(request["pid"], 0)
            channel.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
            continue
        pid = os.fork()
        if pid == 0:
            channel.close()
            become_worker(request, *fds)
        for fd in fds:
            os.close(fd)
        channel.sendall(json.dumps({"pid": pid}).encode())


def become_worker(request: dict, requests: int, answers: int, log: int) -> None:
    """In a fresh fork of the template: the worker's own session, output, folder and user, then its requests."""
    os.setsid()  # its own process group, so a kill reaches anything it started
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(request["work"])
    os.environ.update(request["environment"])
    if request["uid"] is not None:
        os.setgroups([])
        os.setgid(request["gid"])
        os.setuid(request["uid"])
    run(requests, answers)


def run(requests: int, answers: int) -> None:
    main(requests, answers)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skips the interpreter's teardown, 0.4 s with torch loaded: the grading process has everything


if __name__ == "__main__":
    if sys.argv[1] == "--template":
        template(int(sys.argv[2]))
    else:
        run(int(sys.argv[1]), int(sys.argv[2]))
