"""
The grading process's handle on one part's process (grader/part_runtime.py): start it, ask it one
request at a time through typed methods (load, replace, forward, ...), each checked against its
contract (protocol.py), and stop it when its part's time (Budget) or memory runs out. Everything
here runs in the trusted process.

A part's process runs in its own process group, its output captured to a file only the grader can
read, confined by the kernel as far as this system allows (confinement.py), as a user of its own
when the grader is root (launch.Uids). It can read only what it is given: the runtime files, the
submission, and one checkpoint (its own copy, for a loading process; the decoy, for an answering one).
"""

import os
import re
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path

import torch

from .channel import Channel
from .launch import share
from .protocol import CONTRACTS, STACK_SIGNAL, Answer, Ask, BadAnswer, Bound, Expect, PartStopped, Request, Stop, check_answer, one_line
from .wire import FLOATS, Tensors

POLL_SECONDS = 0.05
PROTECTIONS = ("no new privileges", "capabilities", "Landlock", "seccomp")  # what a part's process sets up (part_runtime.confine)
STOP = threading.Event()  # set on Ctrl-C: every part's process is killed, and every ask returns at once
PROC = Path("/proc")  # Linux's figures of each process (CPU time, resident memory); absent elsewhere
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's unit of CPU time


class Budget:
    """
    A part's time, shared by its processes: the CPU time they use, as the kernel counts it (the same
    on an idle machine, a busy one or half a core), and a wall-clock limit for code that blocks or
    sleeps, which uses none. Where the kernel does not count CPU time per process (no /proc), a
    process's wall-clock time stands in for it: stricter, never looser. A process's time counts from
    when it is ready to import the submission: not what starting it took (an interpreter importing torch).
    """

    def __init__(self, cpu_limit: float, wall_limit: float):
        self.cpu_limit, self.wall_limit = cpu_limit, wall_limit
        self.wall_deadline = time.monotonic() + wall_limit
        self.measured = PROC.is_dir()  # the kernel counts each process's CPU time here (else wall-clock time stands in)
        self.unit = "CPU time" if self.measured else "time (CPU time is counted on Linux only)"
        self.seconds: dict[int, float] = {}  # pid -> its seconds, as last read (an ended process keeps its last figure)
        self.zero: dict[int, float] = {}  # pid -> the reading its seconds count from
        self.lock = threading.Lock()  # a part's processes are asked from more than one thread

    def reading(self, pid: int) -> float | None:
        """The process's CPU time, or where it is not counted the clock (None: it is gone)."""
        return cpu_seconds(pid) if self.measured else time.monotonic()

    def started(self, pid: int) -> None:
        """From now on, until ready(), starting the process counts (it must not hang)."""
        with self.lock:
            self.zero[pid], self.seconds[pid] = (0.0 if self.measured else time.monotonic()), 0.0

    def ready(self, pid: int) -> None:
        """From now on, the part's own work counts, from zero."""
        now = self.reading(pid)
        with self.lock:
            self.zero[pid], self.seconds[pid] = (now if now is not None else self.zero[pid]), 0.0

    @property
    def used(self) -> float:
        with self.lock:
            return sum(self.seconds.values())

    def over(self, pid: int) -> str:
        """Why the part must stop ("" if it need not), after reading `pid`'s time."""
        now = self.reading(pid)
        with self.lock:
            if now is not None:
                self.seconds[pid] = now - self.zero[pid]
        if self.used > self.cpu_limit:
            return f"timed out: used {self.used:.0f} s of {self.unit}, over the part's limit of {self.cpu_limit:g} s"
        if time.monotonic() > self.wall_deadline:
            return f"timed out: blocked or sleeping, still running after {self.wall_limit:g} s of wall-clock time with {self.used:.0f} s of {self.unit} used"
        return ""


class PartProcess:
    """One part's process. Use as a context manager: it is killed on the way out, whatever happened."""

    def __init__(self, part: str, root: Path, budget: Budget, user: tuple | None, launcher, start_fields: dict):
        """`user`: (uid, gid) to run as, or None for the grader's own."""
        self.part, self.budget, self.launcher, self.start_fields = part, budget, launcher, start_fields
        self.uid, self.gid = user or (None, None)
        self.root = root = Path(os.path.realpath(root))  # as /proc names it
        # A name that says nothing of what the process is for: a load for a training run looks like any other.
        self.folder = root / f"{part}-{secrets.token_hex(6)}"
        self.home, self.inbox, self.log = self.folder / "home", self.folder / "load", self.folder / "output.txt"
        for folder in (self.folder, self.home, self.inbox):
            folder.mkdir()
            share(folder, self.gid, crossed_only=folder != self.home)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.channel: Channel | None = None
        self.protections: dict = {}  # what it set up (start)
        self.checked = 0.0  # when its time and memory were last read
        self.killed = False  # by the grader, past its wall-clock limit

    def __enter__(self) -> "PartProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.end()

    def end(self) -> None:
        """Kill it, and everything it started, and wait for the system to have it gone."""
        if self.pid is not None and self.returncode is None:
            self.launcher.kill(self.pid)
            self.ended()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        for file in self.inbox.glob("*"):  # its read-only copy of the checkpoint: Windows removes a file only once it is writable
            file.chmod(0o600)
        shutil.rmtree(self.inbox, ignore_errors=True)

    def ended(self) -> int:
        """The process's exit code, waiting (up to the part's wall-clock limit, then killing it) for it to end."""
        while self.returncode is None:
            self.returncode = self.launcher.poll(self.pid)
            if self.returncode is None:
                if time.monotonic() > self.budget.wall_deadline:
                    self.killed = True
                    self.launcher.kill(self.pid)
                time.sleep(0.01)
        self.launcher.kill(self.pid)  # whatever it started, too
        return self.returncode

    def output(self) -> str:
        return tail(self.log) if self.log.exists() else ""

    # --- the requests, one typed method each (protocol.CONTRACTS says what the process does) ----------

    def start(self) -> dict:
        """Start the process and let it confine itself; returns {protection: what it achieved}."""
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        for fd in (requests_w, answers_r):
            widen(fd)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the grader's alone: no part reads another's output
        try:
            self.pid = self.launcher.spawn(requests_r, answers_w, fd, self.home, self.uid, self.gid)
        except OSError as e:  # no interpreter to run, say
            os.close(requests_w)
            os.close(answers_r)
            raise PartStopped(Stop.GRADER_FAILED, one_line(f"a part's process could not start ({e})")) from None
        finally:
            for theirs in (fd, requests_r, answers_w):
                os.close(theirs)
        self.budget.started(self.pid)
        self.channel = Channel(requests_w, answers_r)
        readable = [str(self.root / "runtime"), str(self.root / "code"), str(self.home), str(self.inbox), str(self.root / "decoy")]
        fields = {
            **self.start_fields,
            "part": self.part,
            "submission": str(self.root / "code"),
            "readable": readable + self.start_fields["readable"],
        }
        try:
            protections = self.ask(Request(Ask.START, fields)).fields["protections"]
        except PartStopped as e:  # the submission is not imported yet: this is the grader's own failure, or its Python's
            printed = self.output().strip().splitlines()
            raise PartStopped(
                Stop.GRADER_FAILED, one_line(f"a part's process could not start: {printed[-1] if printed else e.reason}")
            ) from None
        self.budget.ready(self.pid)
        self.protections = {one_line(name): one_line(what) for name, what in protections.items()}
        return self.protections

    def load(self, checkpoint: Path, send: bool) -> Answer:
        """homework.<part>.load() on `checkpoint` (a private copy of it, if `send`: the loading process answers with the model's tensors)."""
        path = checkpoint
        if send:
            path = self.inbox / "checkpoint.pth"
            shutil.copyfile(checkpoint, path)
            if self.uid is not None:
                os.chown(path, self.uid, self.uid)
            path.chmod(0o400)
        return self.ask(Request(Ask.LOAD, {"path": str(path), "send": send}, expect=Expect(model=send)))

    def replace(self, tensors: dict | bytes | Path, trainable: list[str]) -> None:
        """Tensors in place of the model's: by name, or as a payload a load answered with (wire.Tensors.encode), or the file it was saved in."""
        self.ask(Request(Ask.REPLACE, {"trainable": trainable}, tensors))

    def forward(self, x: torch.Tensor, profile: bool = False) -> Answer:
        return self.ask(Request(Ask.FORWARD, {"profile": profile}, {"x": x}, outputs("y", x)))

    def layers(self, x: torch.Tensor, names: list[str]) -> Tensors:
        """What goes in and out of each module named (as "NAME in", "NAME out"), where it is a float tensor of x's shape."""
        ends = {f"{name} {end}": Bound(shape=tuple(x.shape), dtypes=FLOATS) for name in names for end in ("in", "out")}
        return self.ask(Request(Ask.LAYERS, {"names": names}, {"x": x}, Expect(ends, some=True))).tensors

    def train(self, x: torch.Tensor) -> torch.Tensor:
        return self.ask(Request(Ask.TRAIN, tensors={"x": x}, expect=outputs("features", x))).tensors.tensor("features")

    def backward(self, gradient: torch.Tensor, specs: dict) -> Tensors:
        """The gradients the trainable parameters got, each of the dtype and shape its load made it (`specs`: {name: wire.Spec})."""
        expect = Expect({name: Bound(shape=spec.shape, dtypes=frozenset({spec.dtype})) for name, spec in specs.items()}, some=True)
        return self.ask(Request(Ask.BACKWARD, tensors={"gradient": gradient}, expect=expect)).tensors

    # --- the exchange -------------------------------------------------------------------------------

    def ask(self, request: Request) -> Answer:
        """Send `request` and wait for its answer; raises PartStopped when there is none to be had."""
        assert request.ask in CONTRACTS
        self.channel.send(*request.encode())
        while True:
            try:
                message = self.channel.take(POLL_SECONDS)
            except ValueError as e:
                raise BadAnswer(f"it sent something that is not a message ({e})") from None
            except EOFError:
                raise self.died() from None
            if message:
                return check_answer(request, *message)
            if time.monotonic() >= self.checked + POLL_SECONDS:  # not on every read: a model's tensors come in many
                self.watch()

    def died(self) -> PartStopped:
        """
        Why the process ended without answering: it exited or crashed, or something other than the grader
        killed it: the kernel kills the process with the highest oom_score_adj (a part's: part_runtime.py)
        when the machine's, or the container's, memory runs out.
        """
        returncode = self.ended()
        if hasattr(signal, "SIGKILL") and returncode == -signal.SIGKILL and not self.killed:  # Windows has neither
            return PartStopped(Stop.KILLED, "killed by the system (SIGKILL), as happens when the machine's memory runs out")
        return PartStopped(Stop.CRASHED, exit_reason(returncode))

    def watch(self) -> None:
        """Stop the part (PartStopped) when its time or memory has run out, or on Ctrl-C."""
        self.checked = time.monotonic()
        if STOP.is_set():
            raise PartStopped(Stop.CRASHED, "interrupted")
        over = self.budget.over(self.pid)
        if over:
            raise PartStopped(Stop.TIMEOUT, over + self.where())
        # RLIMIT_DATA and RLIMIT_FSIZE (set by the process) make allocations and prints fail past their caps,
        # with a clear error; this catches, later, what they do not count (shared memory), and systems
        # without them (Windows has neither; macOS ignores RLIMIT_DATA).
        memory_cap, output_cap = self.start_fields["memory_cap"], self.start_fields["output_cap"]
        rss = resident_bytes(self.pid)
        if rss is not None and rss > 1.5 * memory_cap:
            raise PartStopped(Stop.CRASHED, f"used more than {1.5 * memory_cap / 2**30:g} GB of memory" + self.where())
        if self.log.stat().st_size > output_cap:
            raise PartStopped(Stop.CRASHED, f"printed more than {output_cap / 2**20:g} MB" + self.where())

    def where(self) -> str:
        """
        Where the submission's code is now, as ", in FUNCTION (homework/FILE.py, line N)": the process
        dumps its threads' stacks into its output when signalled (part_runtime.py, faulthandler), and the
        innermost frame in the submission is the one named. Empty if there is none.
        """
        if STACK_SIGNAL is None:
            return ""
        before = self.log.stat().st_size
        try:
            os.kill(self.pid, STACK_SIGNAL)
        except (ProcessLookupError, PermissionError):
            return ""

        def printed_since() -> str:
            with open(self.log, "rb") as f:
                f.seek(before)
                return f.read().decode(errors="replace")

        for _ in range(20):  # written by a signal handler as soon as the process runs: give a busy machine a second
            time.sleep(0.05)
            if "most recent call first" in printed_since():
                time.sleep(0.05)  # the rest of the dump
                break
        return innermost_frame(printed_since(), self.root / "code")


def outputs(name: str, x: torch.Tensor) -> Expect:
    """The answer to a forward pass or a training step: the model's output for x, under `name`, of at most x's size."""
    return Expect({name: Bound(elements=x.numel())})


def widen(pipe: int) -> None:
    """Linux: a pipe of 1 MB (the most an unprivileged process may ask), not 64 KB: a model's tensors cross it in fewer reads."""
    try:
        import fcntl

        fcntl.fcntl(pipe, getattr(fcntl, "F_SETPIPE_SZ", 1031), 2**20)
    except (ImportError, OSError):
        pass


def resident_bytes(pid: int) -> int | None:
    """The process's resident size (VmRSS of /proc/<pid>/status), or None (no /proc, or the process is gone)."""
    try:
        for line in Path(PROC, str(pid), "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used, all its threads, user and system (/proc/<pid>/stat), or None where it cannot be read."""
    try:
        fields = Path(PROC, str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15 of stat(5)


FRAME = re.compile(r'^\s*File "(.+)", line (\d+) in (\S+)')


def innermost_frame(dump: str, submission: Path) -> str:
    """ ", in FUNCTION (homework/FILE.py, line N)" for the first frame of a faulthandler dump (most recent first) in `submission`."""
    inside = str(submission) + os.sep
    for line in dump.splitlines():
        frame = FRAME.match(line)
        if frame and frame.group(1).startswith(inside):
            return f", in {frame.group(3)} ({frame.group(1).removeprefix(inside)}, line {frame.group(2)})"
    return ""


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"crashed (killed by {signal.Signals(-returncode).name})"
    return f"exited with code {returncode} before finishing (sys.exit or os._exit?)"


def tail(path: Path, limit: int = 4000) -> str:
    """The last `limit` characters of a file, marked when cut."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        text = f.read().decode(errors="replace")
    return f"[... {size - limit} bytes cut ...]\n{text}" if size > limit else text
