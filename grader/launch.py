"""
Starting a part's process (grader/part_runtime.py), in the trusted grading process: the grading
folder it reads from, the user it runs as, and the two ways to start it.

When the grader runs as root (a Gradescope container, a staff server), every part's process runs as
a user of its own: a numeric uid that no account and no other process has, one of a block of uids
(Uids) that one grading run holds for as long as it runs, in a group of that run's alone, which
alone may read its grading folder. So no part's process can signal, trace or read the memory or
files of another, of the same submission or of another graded beside it.
"""

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .parts import GraderError

GRADER_DIR = Path(__file__).resolve().parent
RUNTIME_FILES = tuple(GRADER_DIR / name for name in ("part_runtime.py", "protocol.py", "wire.py", "confinement.py"))
PYTHON_FLAGS = ("-E", "-B", "-X", "utf8")  # no PYTHON* variables, no .pyc files, UTF-8 whatever the locale
FIRST_UID, UIDS_PER_RUN, RUNS = 40_000, 100, 64  # uids 40000-46399: below 65536, as containers map them
# glibc gives an allocation this large pages of its own, which go back to the system when it is freed. By
# default it raises that threshold after the first such free, up to 32 MB, and keeps the pages of every
# tensor below it once freed: the grading process, which receives model after model, would keep hundreds
# of MB it no longer uses, and Gradescope's default container has 768 MB for everything. (Not for the
# parts' processes: computing with 4 MB tensors, they would pay for fresh pages at every step.)
MMAP_THRESHOLD = 2**20
# Of /dev and /etc, only what holds no one's secrets: a part run as root owns root's files, so it could read a disk (and
# the hidden cases on it) or /etc/shadow, whatever Landlock allows beneath a folder.
SYSTEM_FILES = (
    "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom",
    "/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/os-release",
)  # fmt: skip


def prepare(root: Path, submission: Path, write_decoy, group: int | None) -> None:
    """
    The grading folder: runtime/ (the part's program), code/homework (a copy of the submission) and
    decoy/checkpoint.pth (what an answering process loads), readable by this run's part processes:
    by `group` alone, if they have one, else by everyone.
    """
    write_runtime(root)
    # The part imports a copy: the submission's own folder stays as it was, and nothing beside it is importable.
    shutil.copytree(submission, root / "code" / "homework", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "decoy").mkdir()
    write_decoy(root / "decoy" / "checkpoint.pth")
    for path in [root, *root.rglob("*")]:
        share(path, group, crossed_only=path == root)


def write_runtime(root: Path) -> None:
    """root/runtime: the part's program and the modules it imports, copied from the grader's own."""
    (root / "runtime").mkdir()
    for file in RUNTIME_FILES:
        shutil.copyfile(file, root / "runtime" / file.name)


def share(path: Path, group: int | None, crossed_only: bool = False) -> None:
    """Let this run's part processes read `path` (a folder that is `crossed_only` can be entered, not listed)."""
    if group is not None:
        os.chown(path, 0, group)
    others = 0 if group is not None else 0o1 if crossed_only else 0o5 if path.is_dir() else 0o4
    path.chmod((0o710 if crossed_only else 0o750 if path.is_dir() else 0o640) | others)


class Uids:
    """
    As root: a block of uids for one grading run, held (a lock file) until close(), one uid per part's
    process. Elsewhere: none, and every part's process runs as the grader's own user.
    """

    def __init__(self):
        self.free, self.group, self.lock, self.note = None, None, None, ""
        self.taking = threading.Lock()  # parts side by side take uids
        if not running_as_root():
            self.note = "the grader is not root: parts run as its own user"
            return
        import fcntl  # POSIX only, as root is: imported here, so the grader imports on Windows too

        import torch  # what a part's process must be able to read: the interpreter and torch

        for path in (Path(sys.executable).resolve(), Path(torch.__file__).resolve()):
            if not readable_by_others(path):
                self.note = f"another user cannot read {path}: parts run as root"
                return
        folder = Path(tempfile.gettempdir()) / "grader-uids"
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
            raise GraderError(f"{folder} is not a folder of root's alone: remove it")
        for run in range(RUNS):
            first = FIRST_UID + run * UIDS_PER_RUN
            if any(has_account(uid) for uid in range(first, first + UIDS_PER_RUN)):
                continue
            lock = open(folder / f"{first}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self.lock, self.group = lock, first
            # Taken in no order: a process's uid says nothing of what it is for (a load for a training run, say).
            self.free = random.SystemRandom().sample(range(first + 1, first + UIDS_PER_RUN), UIDS_PER_RUN - 1)
            self.note = f"a user of its own for each part's process (uids {first + 1} to {first + UIDS_PER_RUN - 1}, in group {first})"
            return
        raise GraderError(f"all {RUNS} blocks of uids from {FIRST_UID} are in use by graders running now")

    @property
    def separate(self) -> bool:
        return self.free is not None

    def take(self) -> tuple[int, int] | None:
        """(uid, gid) for a part's process: a uid no part's process of this run has had yet, in this run's group (None: the grader's own user)."""
        if not self.separate:
            return None
        with self.taking:
            if not self.free:
                raise GraderError(f"a grading run has {UIDS_PER_RUN - 1} part processes at most")
            return self.free.pop(), self.group

    def close(self) -> None:
        if self.lock:
            self.lock.close()  # and its lock with it


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0  # Windows has no uids


def has_account(uid: int) -> bool:
    import pwd  # POSIX only (see Uids)

    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def readable_by_others(path: Path) -> bool:
    """Whether a user with no account can traverse every folder above `path` and read it, by the permission bits."""
    for folder in [*reversed(path.parents), path]:
        mode = folder.stat().st_mode
        needed = (stat.S_IXOTH if folder != path or folder.is_dir() else 0) | (stat.S_IROTH if folder == path else 0)
        if mode & needed != needed:
            return False
    return True


def environment(home: Path) -> dict[str, str]:
    """
    The grader's environment, less anything of its own (GRADER_*: the hidden configuration's path, say)
    and the folders it was started from (PWD, OLDPWD), with `home` for temporary files. HOME stays the
    user's: an interpreter finds the user's own site-packages (pip install --user) through it, as the
    tools do. (PYTHON* variables are ignored under -E; -X utf8 is UTF-8 mode.)
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GRADER") and k not in ("PWD", "OLDPWD")}
    return {**inherited, "TMPDIR": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def return_freed_memory() -> None:
    """This process's own MMAP_THRESHOLD (glibc; elsewhere the allocator decides)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None
    if mallopt is not None:
        mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD


class Interpreters:
    """
    Starts each part's process in an interpreter of its own, on any system (macOS and Windows, where
    forking a process that has imported torch is not safe): its requests come on its standard input,
    its answers go out on its standard output (part_runtime.py --stdio).
    """

    def __init__(self, root: Path):
        self.command = [sys.executable, *PYTHON_FLAGS, str(root / "runtime" / "part_runtime.py"), "--stdio"]
        self.processes: dict[int, subprocess.Popen] = {}

    def spawn(self, requests: int, answers: int, log: int, home: Path, uid: int | None, gid: int | None) -> int:
        user = {"user": uid, "group": gid, "extra_groups": []} if uid is not None else {}
        process = subprocess.Popen(
            self.command,
            cwd=home,
            env=environment(home),
            stdin=requests,
            stdout=answers,
            stderr=log,
            start_new_session=True,  # POSIX: its own process group, so a kill reaches anything it started
            **user,
        )
        self.processes[process.pid] = process
        return process.pid

    def poll(self, pid: int) -> int | None:
        """The exit code of an ended process (negative: the signal that killed it), or None while it runs."""
        return self.processes[pid].poll()

    def kill(self, pid: int) -> None:
        kill_group(pid)
        self.processes[pid].kill()  # where there are no process groups (Windows), the process alone

    def close(self) -> None:
        for pid in self.processes:
            self.kill(pid)
            self.processes[pid].wait()


class Template:
    """
    Linux: starts each part's process as a fork of one template process (part_runtime.py --template)
    that has imported torch and the runtime, and never runs a submission: a process is ready in a
    fifth of a second instead of the second and a half an interpreter takes to import torch.
    """

    def __init__(self, root: Path):
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, *PYTHON_FLAGS, str(root / "runtime" / "part_runtime.py"), "--template", str(theirs.fileno())],
            cwd=root / "runtime",
            env=environment(root / "runtime"),
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
            raise GraderError("the grader's template process for the parts ended (see grader/part_runtime.py --template)")
        return json.loads(reply)

    def spawn(self, requests: int, answers: int, log: int, home: Path, uid: int | None, gid: int | None) -> int:
        return self._call(
            {"ask": "fork", "home": str(home), "environment": {"TMPDIR": str(home)}, "uid": uid, "gid": gid}, [requests, answers, log]
        )["pid"]

    def poll(self, pid: int) -> int | None:
        """The exit code of an ended process (negative: the signal that killed it), or None while it runs."""
        return self._call({"ask": "poll", "pid": pid})["returncode"]

    def kill(self, pid: int) -> None:
        kill_group(pid)

    def close(self) -> None:
        self.socket.close()  # the template ends when its socket does
        kill_group(self.process.pid)
        self.process.wait()


def launcher(root: Path) -> Interpreters | Template:
    """A template on Linux; elsewhere an interpreter per process, since a fork after importing torch is not safe there."""
    return Template(root) if sys.platform == "linux" else Interpreters(root)


@contextlib.contextmanager
def shared_launcher():
    """
    One launcher for grading runs one after another (grade's `shared`): the template, which never runs a
    submission, starts once instead of once a run. Its runtime folder holds the grader's public code
    alone, readable by every part's user.
    """
    with tempfile.TemporaryDirectory(prefix="grader-runtime-") as tmp:
        write_runtime(Path(tmp))
        for path in [Path(tmp), *Path(tmp).rglob("*")]:
            share(path, None)
        start = launcher(Path(tmp))
        try:
            yield start
        finally:
            start.close()


def kill_group(pid: int) -> None:
    """POSIX: kill a process group (a part's process and anything it may have started)."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def python_folders(private: list[Path]) -> tuple[list[str], list[str]]:
    """
    (what a part's process may read, its sys.path): Python, its packages (site-packages, the user's
    too), the system's libraries and a few of its files (SYSTEM_FILES); never the folder the grader was started from or a
    PYTHONPATH entry (a folder of submissions, say), nor one that holds, or lies in, one of the grader's
    private paths (its checkpoints, its homework package, the hidden configuration), nor /proc, where
    other processes' command lines are. Computed here, so that no private path is ever named to a part's process.
    """
    system = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/share", "/lib", "/lib64", "/sys", *SYSTEM_FILES]
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    sites = {os.path.realpath(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    private = [os.path.realpath(p) for p in private]

    def inside(path: str, folders) -> bool:
        return any(path == f or path.startswith(f + os.sep) for f in folders)

    def pythons_own(entry: str) -> bool:
        return os.path.exists(entry) and (os.path.realpath(entry) in sites or inside(os.path.realpath(entry), roots))

    def overlaps(path: str) -> bool:
        return inside(path, private) or any(p.startswith(path + os.sep) for p in private)

    path = [entry for entry in sys.path if entry and pythons_own(entry) and not overlaps(os.path.realpath(entry))]
    candidates = {os.path.realpath(p) for p in [*roots, *sites, *path, *system] if os.path.exists(p)}
    return sorted(p for p in candidates if not overlaps(p)), path
