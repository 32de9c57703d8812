"""
The kernel's rules for a part's process (grader/confinement.py), applied in a fresh interpreter and
tried as a submission would try to get around them: through Python and straight through ctypes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.confinement import landlock_abi

GRADER = Path(__file__).resolve().parent.parent / "grader"
TRIES = """
import ctypes, fcntl, json, mmap, os, struct, sys, threading
sys.path.insert(0, {grader!r})
import confinement

confinement.no_new_privs()
confinement.drop_capabilities()
confinement.restrict_files([{readable!r}, "/usr", "/lib", "/lib64", "/etc", "/dev", sys.prefix, sys.base_prefix, {grader!r}, {work!r}]){seccomp}
libc = ctypes.CDLL(None, use_errno=True)
mapped = mmap.mmap(os.open({readable_file!r}, os.O_RDONLY), 0, access=mmap.ACCESS_COPY)  # a file's pages, mapped
pages = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
IO_SETUP = confinement.SYSCALLS[__import__("platform").machine().lower()][1]["io_setup"]
tries = {{
    "read the grader's file": lambda: open({secret!r}).read(),
    "write a file": lambda: open({outside!r}, "w"),
    "write a file, through ctypes": lambda: libc.open({outside!r}.encode(), os.O_CREAT | os.O_WRONLY, 0o600) >= 0 or 1 / 0,
    "write in the readable folder, through ctypes (openat)": lambda: libc.openat(-100, os.path.join({work!r}, "x").encode(), os.O_CREAT | os.O_RDWR, 0o600) >= 0 or 1 / 0,
    "append to a file, through ctypes": lambda: libc.open({readable_file!r}.encode(), os.O_APPEND) >= 0 or 1 / 0,
    "remove a file, through ctypes": lambda: libc.unlink({readable_file!r}.encode()) == 0 or 1 / 0,
    "make a folder, through ctypes": lambda: libc.mkdir(os.path.join({work!r}, "d").encode(), 0o700) == 0 or 1 / 0,
    "link the readable file": lambda: os.link({readable_file!r}, os.path.join({work!r}, "link")),
    "fork": lambda: os.fork() == 0 and os._exit(0),
    "memfd through ctypes": lambda: libc.memfd_create(b"x", 0) >= 0 or 1 / 0,
    "System V shared memory through ctypes": lambda: libc.shmget(0, 4096, 0o1600) >= 0 or 1 / 0,
    "a socket": lambda: __import__("socket").socket(),
    "signal the parent": lambda: os.kill(os.getppid(), 0),
    "signal the parent, through ctypes": lambda: libc.kill(os.getppid(), 0) == 0 or 1 / 0,
    "signal the parent's thread, through ctypes": lambda: libc.syscall(234, os.getppid(), os.getppid(), 0) == 0 or 1 / 0,
    "trace the parent, through ctypes": lambda: libc.ptrace(16, os.getppid(), 0, 0) == 0 or 1 / 0,
    "read the parent's memory": lambda: open(f"/proc/{{os.getppid()}}/mem", "rb"),
    "read the parent's command line": lambda: open(f"/proc/{{os.getppid()}}/cmdline", "rb").read(),
    "read a file no one may read (mode 000), as root would": lambda: open({unreadable_file!r}).read(),
    "a user namespace, through ctypes": lambda: libc.unshare(0x10000000) == 0 or 1 / 0,
    "evict a file's cached pages (posix_fadvise)": lambda: os.posix_fadvise(os.open({readable_file!r}, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED),
    "read only what is cached (preadv2, RWF_NOWAIT)": lambda: os.preadv(os.open({readable_file!r}, os.O_RDONLY), [bytearray(4)], 0, os.RWF_NOWAIT),
    "ask which pages are cached (mincore, through ctypes)": lambda: libc.mincore(ctypes.c_void_p(pages), 4096, ctypes.create_string_buffer(1)) == 0 or 1 / 0,
    "push pages out (madvise MADV_PAGEOUT, through ctypes)": lambda: libc.madvise(ctypes.c_void_p(pages), 4096, 21) == 0 or 1 / 0,
    "ask whether a page is cached (Linux AIO, through ctypes)": lambda: libc.syscall(IO_SETUP, 8, ctypes.byref(ctypes.c_ulong(0))) == 0 or 1 / 0,
    "lock a readable file (fcntl)": lambda: fcntl.fcntl(os.open({readable_file!r}, os.O_RDONLY), 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 8, 0)),
    "lock a readable file (flock)": lambda: fcntl.flock(os.open({readable_file!r}, os.O_RDONLY), fcntl.LOCK_SH),
    "give a readable file an attribute (setxattr)": lambda: os.setxattr({readable_file!r}, "user.weights", b"0123"),
    "change a readable file's times (utime)": lambda: os.utime({readable_file!r}, (1, 1)),
    "change a readable file's mode (fchmod)": lambda: os.fchmod(os.open({readable_file!r}, os.O_RDONLY), 0o644),
}}
results = {{}}
for name, attempt in tries.items():
    try:
        attempt()
        results[name] = "allowed"
    except Exception as e:
        results[name] = "refused"
results["signal itself"] = "allowed" if libc.kill(os.getpid(), 0) == 0 else "refused"
results["open a file for reading, through ctypes"] = "allowed" if libc.open({readable_file!r}.encode(), os.O_RDONLY) >= 0 else "refused"
thread = threading.Thread(target=lambda: results.update({{"a thread": "allowed"}}))
thread.start()
thread.join()
results["read the readable folder"] = "allowed" if open({readable_file!r}).read() == "data" else "refused"
print(json.dumps(results))
"""


def confined(tmp_path: Path, seccomp: bool = True) -> dict:
    """What a process confined as a part's is (Landlock, and seccomp if `seccomp`) can do: {try: allowed or refused}."""
    work, readable, secret = tmp_path / "work", tmp_path / "readable", tmp_path / "secret.txt"
    work.mkdir(parents=True)
    readable.mkdir(parents=True)
    (readable / "data.txt").write_text("data")
    secret.write_text("weights")
    (readable / "unreadable.txt").write_text("root's")
    (readable / "unreadable.txt").chmod(0)
    seccomp_line = "\nconfinement.forbid_syscalls()" if seccomp else ""
    code = TRIES.format(
        grader=str(GRADER),
        readable=str(readable),
        readable_file=str(readable / "data.txt"),
        unreadable_file=str(readable / "unreadable.txt"),
        work=str(work),
        secret=str(secret),
        outside=str(tmp_path / "outside"),
        seccomp=seccomp_line,
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "outside").exists() and (readable / "data.txt").read_text() == "data"
    return json.loads(result.stdout)


ALWAYS = {"a thread", "read the readable folder", "signal itself", "open a file for reading, through ctypes"}


@pytest.mark.skipif(landlock_abi() < 1, reason="no Landlock in this kernel")
def test_a_confined_process_can_read_only_what_it_was_given_and_write_nothing(tmp_path):
    results = confined(tmp_path)
    assert {name for name, outcome in results.items() if outcome == "allowed"} == ALWAYS, results


@pytest.mark.skipif(landlock_abi() < 1, reason="no Landlock in this kernel")
def test_seccomp_alone_refuses_writing_starting_signalling_and_tracing(tmp_path):
    """Without its seccomp filter, Landlock alone lets a part signal its parent on kernels before 6.12 (ABI 6): the filter refuses it everywhere."""
    without = {name for name, outcome in confined(tmp_path / "landlock", seccomp=False).items() if outcome == "allowed"}
    assert {
        "fork",
        "a socket",
        "evict a file's cached pages (posix_fadvise)",
        "read only what is cached (preadv2, RWF_NOWAIT)",
        "lock a readable file (fcntl)",
        "lock a readable file (flock)",
    } <= without  # what seccomp adds
    assert "read the parent's memory" not in without and "read the parent's command line" not in without  # Landlock: no /proc, no tracing
