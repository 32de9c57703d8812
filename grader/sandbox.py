"""
The grading process's side of a part's process (grader/worker.py): starting it, asking it one
request at a time (protocol.py), and reading what the kernel says about it at the moments the
grading process chooses. Everything here runs in the trusted process.

Workers are forks of a template process (Template) where that is safe, interpreters of their own
elsewhere (Interpreters). A worker runs in its own process group with a time budget (Budget: CPU
time, and a wall-clock backstop) and a memory cap (both enforced by killing the group), its output
captured to a file, confined by the kernel as far as this system allows (confinement.py), and, when
the grader runs as root (a Gradescope container), as an unprivileged user. It can read only what it
is given: the runtime files, the submission, its own working folder, and a copy of a checkpoint for
as long as a LOAD request takes.
"""

import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .parts import GraderError
from .protocol import STACK_SIGNAL, Answer, Ask, BadAnswer, PartStopped, Request, Status, check_answer, take_message

GRADER_DIR = Path(__file__).resolve().parent
RUNTIME_FILES = (GRADER_DIR / "worker.py", GRADER_DIR / "protocol.py", GRADER_DIR / "confinement.py", GRADER_DIR.parent / "homework" / "memory.py")
USER_ENV = "GRADER_USER"  # the unprivileged user parts run as when the grader runs as root (default: nobody)
POLL_SECONDS = 0.05
PROTECTIONS = ("no new privileges", "Landlock", "seccomp")  # what a worker sets up (worker.confine); each is reported
STOP = threading.Event()  # set on Ctrl-C: every worker is killed, and every ask returns at once
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's unit of CPU time


def prepare(root: Path, submission: Path) -> None:
    """The grading folder: runtime/ (the worker's files) and code/homework (a copy of the submission), readable by a worker."""
    runtime = root / "runtime"
    runtime.mkdir()
    for file in RUNTIME_FILES:
        shutil.copyfile(file, runtime / file.name)
    # The worker imports a copy: the submission's own folder stays as it was, and nothing beside it is importable.
    shutil.copytree(submission, root / "code" / "homework", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o711 if path == root else 0o755 if path.is_dir() else 0o644)  # the root can be crossed, not listed


@dataclass(frozen=True)
class Identity:
    """Who the workers run as: the grader's own user, or an unprivileged one (uid, gid) when the grader is root."""

    uid: int | None = None
    gid: int | None = None
    note: str = ""  # why not, when not

    @property
    def separate(self) -> bool:
        return self.uid is not None


def worker_identity() -> Identity:
    """An unprivileged user for the workers, when the grader runs as root and that user can run this Python."""
    if os.geteuid() != 0:
        return Identity(note="the grader is not root: parts run as its own user")
    name = os.environ.get(USER_ENV, "nobody")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return Identity(note=f"no user {name!r} (set {USER_ENV})")
    import torch  # what the worker must be able to read: the interpreter and torch

    for path in (Path(sys.executable).resolve(), Path(torch.__file__).resolve()):
        if not reachable(path, user.pw_uid, user.pw_gid):
            return Identity(note=f"user {name} cannot read {path}")
    return Identity(user.pw_uid, user.pw_gid, f"user {name}")


def reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` can traverse every folder above `path` and read it, by the permission bits."""
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        shift = 6 if info.st_uid == uid else 3 if info.st_gid == gid else 0
        needed = (stat.S_IXOTH if folder != path or folder.is_dir() else 0) | (stat.S_IROTH if folder == path else 0)
        if (info.st_mode >> shift) & needed != needed:
            return False
    return True


class Interpreters:
    """Starts each worker in an interpreter of its own: where forking a template is not safe (macOS)."""

    def __init__(self, root: Path):
        self.worker = root / "runtime" / "worker.py"
        self.processes: dict[int, subprocess.Popen] = {}

    def spawn(self, requests: int, answers: int, log: int, work: Path, identity: Identity) -> int:
        user = {"user": identity.uid, "group": identity.gid, "extra_groups": []} if identity.separate else {}
        process = subprocess.Popen(
            [sys.executable, "-E", "-B", str(self.worker), str(requests), str(answers)],
            cwd=work,
            env=worker_environment(work),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(requests, answers),
            start_new_session=True,  # its own process group, so a kill reaches anything it started
            **user,
        )
        self.processes[process.pid] = process
        return process.pid

    def reap(self, pid: int) -> int:
        """The exit code of an ended worker (negative: the signal that killed it)."""
        return self.processes.pop(pid).wait()

    def close(self) -> None:
        pass


class Template:
    """
    Starts each worker as a fork of one template process (worker.py --template) that has imported torch
    and the runtime, and never runs a submission: a worker is ready in a fifth of a second instead of
    the second and a half an interpreter takes to import torch, and it starts from the same state.
    """

    def __init__(self, root: Path):
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-E", "-B", str(root / "runtime" / "worker.py"), "--template", str(theirs.fileno())],
            cwd=root / "runtime",
            env=worker_environment(root / "runtime"),
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()
        self.socket, self.lock = ours, threading.Lock()  # parts side by side share it

    def _call(self, request: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            socket.send_fds(self.socket, [json.dumps(request).encode()], list(fds))
            reply = self.socket.recv(4096)
        if not reply:
            raise GraderError("the grader's template process for the parts ended (see grader/worker.py --template)")
        return json.loads(reply)

    def spawn(self, requests: int, answers: int, log: int, work: Path, identity: Identity) -> int:
        environment = {k: v for k, v in worker_environment(work).items() if k in ("HOME", "TMPDIR")}
        return self._call({"ask": "fork", "work": str(work), "environment": environment, "uid": identity.uid, "gid": identity.gid}, [requests, answers, log])["pid"]

    def reap(self, pid: int) -> int:
        """The exit code of an ended worker (negative: the signal that killed it), once the kernel has it."""
        while process_state(pid) not in ("Z", None):  # the template may only wait for a worker that has ended
            time.sleep(0.01)
        return self._call({"ask": "reap", "pid": pid})["returncode"]

    def close(self) -> None:
        self.socket.close()  # the template ends when its socket does
        kill_group(self.process.pid)
        self.process.wait()


def launcher(root: Path) -> Interpreters | Template:
    """A template on Linux; elsewhere (macOS) an interpreter per worker, since a fork after importing torch is not safe there."""
    return Template(root) if sys.platform == "linux" else Interpreters(root)


def process_state(pid: int) -> str | None:
    """The process's state letter in /proc/<pid>/stat (Z: ended, not yet reaped), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class Worker:
    """One part's process. Use as a context manager: it is killed on the way out, whatever happened."""

    def __init__(self, part: str, root: Path, name: str, budget: "Budget", identity: Identity, private: list[Path], memory_cap: int, output_cap: int, launcher):
        self.part, self.budget, self.identity, self.private, self.launcher = part, budget, identity, private, launcher
        self.memory_cap, self.output_cap = memory_cap, output_cap
        self.root = root = Path(os.path.realpath(root))  # as /proc names it
        self.folder = root / name
        self.work, self.inbox, self.log = self.folder / "work", self.folder / "load", self.folder / "output.txt"
        for folder in (self.folder, self.work, self.inbox):
            folder.mkdir()
            folder.chmod(0o711)
        if identity.separate:
            os.chown(self.work, identity.uid, identity.gid)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.buffer = b""  # what the worker sent beyond the last answer
        self.last_request_size = 0  # bytes: the worker reads them from its pipe
        self.baseline_files: set[str] = set()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pid is not None:
            kill_group(self.pid)
            self.ended()
            os.close(self.requests)
            os.close(self.answers)

    def ended(self) -> int:
        """The worker's exit code, waiting (up to the part's wall-clock limit, then killing it) for it to end."""
        if self.returncode is None:
            while process_state(self.pid) not in ("Z", None) and time.monotonic() < self.budget.wall_deadline:
                time.sleep(0.01)
            kill_group(self.pid)
            self.returncode = self.launcher.reap(self.pid)
        return self.returncode

    def output(self) -> str:
        return tail(self.log)

    def start(self) -> dict:
        """Start the process and let it confine itself; returns {protection: what it achieved}."""
        requests_r, self.requests = os.pipe()
        self.answers, answers_w = os.pipe()
        os.set_blocking(self.requests, False)  # a worker that stops reading must not block the grading process
        with open(self.log, "wb") as log:
            self.pid = self.launcher.spawn(requests_r, answers_w, log.fileno(), self.work, self.identity)
        self.budget.started(self.pid)
        os.close(requests_r)
        os.close(answers_w)
        fields = {
            "part": self.part,
            "submission": str(self.root / "code"),
            "readable": [str(self.root / "runtime"), str(self.root / "code"), str(self.inbox)],
            "writable": [str(self.work), os.devnull],
            "private": [str(p) for p in self.private],
            "memory_cap": self.memory_cap,
            "output_cap": self.output_cap,
            "protections": list(PROTECTIONS),
        }
        try:
            protections = self.ask(Request(Ask.START, fields)).fields["protections"]
        except PartStopped as e:  # the submission is not imported yet: this is the grader's own failure
            printed = self.output().strip().splitlines()
            raise GraderError(f"a part's process could not start ({e.reason}): {printed[-1] if printed else 'it printed nothing'}") from None
        self.baseline_files = set(self.held_files())  # the interpreter's and torch's own, before the submission is imported
        return protections

    def ask(self, request: Request) -> Answer:
        """Send `request` and wait for its answer; raises PartStopped when there is none to be had."""
        data = request.encode()
        self.last_request_size = len(data)
        self._send(data)
        while True:
            try:
                message, self.buffer = take_message(self.buffer)
            except ValueError as e:
                raise BadAnswer(f"it sent something that is not a message ({e})") from None
            if message:
                return check_answer(request, *message)
            self._wait(self.answers, writing=False)
            data = os.read(self.answers, 2**20)
            if not data:
                raise PartStopped(Status.CRASHED, exit_reason(self.ended()))
            self.buffer += data

    def load(self, checkpoint: Path, seed: int, ask: Ask = Ask.LOAD) -> Answer:
        """
        Ask for a load of a copy of `checkpoint`. Once it has answered, the copy is removed and its
        working folder emptied, and it must hold no file it did not hold before the submission was
        imported: from then on, the float32 weights are out of its reach.
        """
        copy = self.inbox / "checkpoint.pth"
        shutil.copyfile(checkpoint, copy)
        if self.identity.separate:
            os.chown(copy, self.identity.uid, self.identity.gid)
        copy.chmod(0o400)
        try:
            answer = self.ask(Request(ask, {"path": str(copy), "seed": seed}))
        finally:
            copy.unlink()
            for path in self.work.iterdir():
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        kept = sorted(set(self.held_files()) - self.baseline_files)
        if kept:
            raise PartStopped(Status.REFUSED, f"it kept {kept[0]} after load() returned{f' (and {len(kept) - 1} more)' if len(kept) > 1 else ''}: only the model may outlive the load")
        return answer

    def _send(self, data: bytes) -> None:
        while data:
            self._wait(self.requests, writing=True)
            try:
                data = data[os.write(self.requests, data) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise PartStopped(Status.CRASHED, exit_reason(self.ended())) from None

    def _wait(self, fd: int, writing: bool) -> None:
        """Until `fd` is ready, watching the part's time, the memory cap and Ctrl-C."""
        while True:
            if STOP.is_set():
                raise PartStopped(Status.CRASHED, "interrupted")
            over = self.budget.over(self.pid)
            if over:
                raise PartStopped(Status.TIMEOUT, over + self.where())
            status = read_status(self.pid)
            # RLIMIT_DATA (set by the worker) makes allocations fail past memory_cap, with a clear error; this
            # catches, later, what that limit does not count (shared memory) and systems that ignore it.
            if status and status["VmRSS"] > 1.5 * self.memory_cap:
                raise PartStopped(Status.CRASHED, f"used more than {1.5 * self.memory_cap / 2**30:g} GB of memory" + self.where())
            ready = select.select([], [fd], [], POLL_SECONDS)[1] if writing else select.select([fd], [], [], POLL_SECONDS)[0]
            if ready:
                return

    def where(self) -> str:
        """
        Where the submission's code is now, as ", in FUNCTION (homework/FILE.py, line N)": the worker
        dumps its threads' stacks into its output when signalled (worker.py, faulthandler), and the
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

    # --- what the kernel says about the worker (Linux; None or empty elsewhere) --------------------

    def memory(self) -> dict | None:
        """{"resident": what can hold a model (see resident_memory), "rss", "hwm": the peak since reset_peak()}."""
        status = read_status(self.pid)
        resident = resident_memory(self.pid, self.root)
        if not status or resident is None:
            return None
        return {"resident": resident, "rss": status["VmRSS"], "hwm": status["VmHWM"]}

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # 5: reset the peak resident size (VmHWM) to the current one
            return True
        except OSError:
            return False

    def bytes_read(self) -> int | None:
        """All bytes the worker's read() calls returned so far (rchar): files, pipes and all."""
        try:
            for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def held_files(self) -> list[str]:
        """The files the worker holds open or mapped, other than shared libraries: pipes, memfds and sockets included."""
        pid = self.pid
        held = []
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    held.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
            mappings = [line.split(maxsplit=5) for line in Path(f"/proc/{pid}/maps").read_text().splitlines()]
        except OSError:
            return []
        mapped = [(fields[1], fields[5]) for fields in mappings if len(fields) == 6 and not fields[5].startswith("[")]
        libraries = shared_libraries(mapped, self.root)
        return held + [f"a mapping of {path}" for _, path in mapped if path not in libraries]


def shared_libraries(mapped: list[tuple[str, str]], grading_folder: Path) -> set[str]:
    """
    Of (permissions, path) mappings, the paths of shared libraries: files mapped executable that still
    exist, outside the grading folder (the only place a submission can write a file to map).
    """
    inside = str(grading_folder) + os.sep
    return {path for permissions, path in mapped if "x" in permissions and not path.endswith(" (deleted)") and not path.startswith(inside)}


MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+ *(.*)$")


def resident_memory(pid: int, grading_folder: Path) -> int | None:
    """
    Resident pages that can hold weights, in bytes: anonymous ones (the heap and private mappings,
    where tensors live) and those of mapped files, such as a checkpoint opened with mmap, which the
    allocator never hands out. Shared libraries' pages are left out (importing numpy maps megabytes of
    code), as `shared_libraries` tells them apart.
    """
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    anonymous, file_pages, mapped = 0, {}, []
    path, rss = "", 0
    for line in text.splitlines():
        if mapping := MAPPING.match(line):
            permissions, path = mapping.groups()
            mapped.append((permissions, path))
        elif line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Anonymous:"):  # comes after Rss: the mapping's private, written pages
            private = int(line.split()[1]) * 1024
            anonymous += private
            if path and not path.startswith("["):  # a file, not [heap] or [stack]
                file_pages[path] = file_pages.get(path, 0) + rss - private
    libraries = shared_libraries(mapped, grading_folder)
    return anonymous + sum(size for p, size in file_pages.items() if p not in libraries)


def read_status(pid: int) -> dict[str, int] | None:
    """Memory fields of /proc/<pid>/status in bytes, or None (no /proc, or the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon"):
            fields[name] = int(value.split()[0]) * 1024  # the kernel reports kB
    return fields if len(fields) == 3 else None


class Budget:
    """
    A part's time, shared by its processes: the CPU time they use, as the kernel counts it (the same
    on an idle machine, a busy one or half a core), and a wall-clock limit for code that blocks or
    sleeps, which uses none. Where the kernel does not count CPU time per process (no /proc), a
    process's wall-clock time since it started stands in for it: stricter, never looser.
    """

    def __init__(self, cpu_limit: float, wall_limit: float):
        self.cpu_limit, self.wall_limit = cpu_limit, wall_limit
        self.wall_deadline = time.monotonic() + wall_limit
        self.seconds: dict[int, float] = {}  # pid -> its CPU seconds, as last read (an ended process keeps its last figure)
        self.starts: dict[int, float] = {}
        self.lock = threading.Lock()  # a part's processes are asked from more than one thread

    def started(self, pid: int) -> None:
        with self.lock:
            self.starts[pid], self.seconds[pid] = time.monotonic(), 0.0

    @property
    def used(self) -> float:
        with self.lock:
            return sum(self.seconds.values())

    def over(self, pid: int) -> str:
        """Why the part must stop ("" if it need not), after reading `pid`'s CPU time."""
        seconds = cpu_seconds(pid)
        with self.lock:
            self.seconds[pid] = seconds if seconds is not None else time.monotonic() - self.starts[pid]
        if self.used > self.cpu_limit:
            return f"timed out: used {self.used:.0f} s of CPU time, over the part's limit of {self.cpu_limit:g} s"
        if time.monotonic() > self.wall_deadline:
            return f"timed out: blocked or sleeping, still running after {self.wall_limit:g} s of wall-clock time with {self.used:.0f} s of CPU time used"
        return ""


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used, all its threads, user and system (/proc/<pid>/stat), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15 of stat(5)


FRAME = re.compile(r'^\s*File "(.+)", line (\d+) in (\S+)')


def innermost_frame(dump: str, submission: Path) -> str:
    """", in FUNCTION (homework/FILE.py, line N)" for the first frame of a faulthandler dump (most recent first) in `submission`."""
    inside = str(submission) + os.sep
    for line in dump.splitlines():
        frame = FRAME.match(line)
        if frame and frame.group(1).startswith(inside):
            return f", in {frame.group(3)} ({frame.group(1).removeprefix(inside)}, line {frame.group(2)})"
    return ""


def worker_environment(workdir: Path) -> dict[str, str]:
    """The grader's environment, less anything of its own (the hidden configuration's path, say)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GRADER")}
    return {
        **inherited,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # glibc: serve every block over 128 KB straight from the kernel and return it when freed, so the
        # resident size follows what is allocated (by default glibc keeps freed blocks up to 32 MB).
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
    }


def kill_group(pid: int) -> None:
    """Kill a process group (a worker and anything it may have started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
