"""
Runs grader/child.py on one part of a submission, in its own process group, and watches it:
a wall-clock timeout and a memory cap (both enforced by killing the group), output captured to a
file, messages read from a pipe, and the kernel's memory figures for the child read at each phase
it announces. Nothing the child sends is unpickled: headers are JSON, tensors are loaded with
weights_only=True by the caller.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).resolve().parent / "child.py"
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 2**20  # an output of 4096 x 1024 float32 is 16 MB
POLL_SECONDS = 0.05
STOP = threading.Event()  # set on Ctrl-C: every watcher kills its child and returns at once


@dataclass
class ChildRun:
    messages: list[tuple[dict, bytes]] = field(default_factory=list)  # (header, payload), phases excluded
    sequence: list[str] = field(default_factory=list)  # every message and phase, in order, as `token` names it
    phases: dict[str, dict] = field(default_factory=dict)  # phase name -> the child's facts and the kernel's figures
    status: str = "ok"  # ok, error (the submission raised), timeout, crashed
    reason: str = ""  # one line, when status is not ok
    output: str = ""  # the tail of what the child printed


def run_child(job: dict, part_dir: Path, timeout: float, memory_cap: int, output_cap: int) -> ChildRun:
    """Run one part's child with `job` (see child.py); never raises for anything the child does."""
    workdir = part_dir / "work"
    workdir.mkdir(parents=True)
    to_parent_r, to_parent_w = os.pipe()
    from_parent_r, from_parent_w = os.pipe()
    job = {**job, "fds": [to_parent_w, from_parent_r], "workdir": str(workdir), "memory_cap": memory_cap, "output_cap": output_cap}
    log_path = part_dir / "output.txt"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-E", "-B", str(CHILD), json.dumps(job)],
            cwd=workdir,
            env=child_environment(workdir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(to_parent_w, from_parent_r),
            start_new_session=True,  # its own process group, so a kill reaches anything it started
        )
    os.close(to_parent_w)
    os.close(from_parent_r)
    try:
        data_folders = {os.path.realpath(f) for f in (workdir, job["submission"], *(Path(c).parent for c in job["checkpoints"]))}  # as smaps names them
        run = watch(process, to_parent_r, from_parent_w, timeout, memory_cap, data_folders)
    finally:
        kill(process)
        os.close(to_parent_r)
        os.close(from_parent_w)
    if run.status == "ok" and not any(h["kind"] in ("done", "error") for h, _ in run.messages):
        run.status, run.reason = "crashed", exit_reason(process.returncode)
    run.output = tail(log_path)
    return run


def watch(process: subprocess.Popen, messages_fd: int, ack_fd: int, timeout: float, memory_cap: int, data_folders: set[str]) -> ChildRun:
    run = ChildRun()
    deadline = time.monotonic() + timeout
    buffer = b""
    open_fds = [messages_fd]
    while open_fds or process.poll() is None:
        if STOP.is_set():
            run.status, run.reason = "crashed", "interrupted"
            return run
        if time.monotonic() > deadline:
            run.status, run.reason = "timeout", f"timed out after {timeout:g} s"
            return run
        status = read_status(process.pid)
        # RLIMIT_DATA (set by the child) makes allocations fail past memory_cap, with a clear error; this
        # catches, later, what that limit does not count (shared memory) and systems that ignore it.
        if status and status["VmRSS"] > 1.5 * memory_cap:
            run.status, run.reason = "crashed", f"used more than {1.5 * memory_cap / 2**30:g} GB of memory"
            return run
        if not open_fds:
            time.sleep(POLL_SECONDS)
            continue
        if select.select(open_fds, [], [], POLL_SECONDS)[0]:
            data = os.read(messages_fd, 2**20)
            if not data:
                open_fds = []
            buffer += data
        try:
            messages, buffer = split_messages(buffer)
        except ValueError as e:
            run.status, run.reason = "crashed", f"sent malformed results ({e})"
            return run
        for header, payload in messages:
            run.sequence.append(token(header))
            if header["kind"] == "phase":
                run.phases[token(header)] = {**header, **kernel_figures(process.pid, data_folders)}
                os.write(ack_fd, b"1")
            else:
                run.messages.append((header, payload))
                if header["kind"] == "error":
                    run.status, run.reason = "error", str(header.get("message", ""))
    return run


def split_messages(buffer: bytes) -> tuple[list[tuple[dict, bytes]], bytes]:
    """The complete messages at the start of `buffer` (the format Channel.send writes), and the rest."""
    messages = []
    while (end := buffer.find(b"\n", 0, MAX_HEADER)) >= 0:
        header = json.loads(buffer[:end])
        if not isinstance(header, dict) or not isinstance(header.get("kind"), str) or not isinstance(header.get("size"), int) or not 0 <= header["size"] <= MAX_PAYLOAD:
            raise ValueError("bad header")
        stop = end + 1 + header["size"]
        if len(buffer) < stop:
            break
        messages.append((header, buffer[end + 1 : stop]))
        buffer = buffer[stop:]
    if len(buffer) > MAX_HEADER + MAX_PAYLOAD:
        raise ValueError("message too large")
    if buffer and buffer.find(b"\n", 0, MAX_HEADER) < 0 and len(buffer) >= MAX_HEADER:
        raise ValueError("header too long")
    return messages, buffer


def token(header: dict) -> str:
    """A message in a few words, e.g. "loaded" or "output 0 1", to check the order they came in (grade.py)."""
    kind = header["kind"]
    if kind == "phase":
        return str(header.get("phase"))
    if kind == "output":
        return f"output {header.get('checkpoint')} {header.get('inputs')}"
    if kind == "training":
        return f"training {header.get('seed')}"
    return kind


def kernel_figures(pid: int, data_folders: set[str]) -> dict:
    """
    What the kernel says about the child now: the memory that can hold a model (`resident`, see
    `resident_memory`), all resident memory (`rss`), and its peak since the last reset (`hwm`, after
    which the peak is reset to now). Empty where /proc is missing (macOS).
    """
    status = read_status(pid)
    resident = resident_memory(pid, data_folders)
    if not status or resident is None:
        return {}
    figures = {"resident": resident, "rss": status["VmRSS"], "hwm": status["VmHWM"]}
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak resident size (VmHWM) to the current one
    except OSError:
        figures["hwm"] = None
    return figures


MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+ *(.*)$")


def resident_memory(pid: int, data_folders: set[str]) -> int | None:
    """
    Resident pages that can hold weights, in bytes: anonymous ones (the heap and private mappings,
    where tensors live) and those of mapped files, such as a checkpoint opened with mmap, which the
    allocator never hands out. Shared libraries' pages are left out (importing numpy maps megabytes of
    code): files mapped executable, unless they are deleted (memfd) or in `data_folders`, the only
    places a submission can read weights from or write them to.
    """
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    anonymous, file_pages, executable = 0, {}, set()
    path, rss = "", 0
    for line in text.splitlines():
        if mapping := MAPPING.match(line):
            permissions, path = mapping.groups()
            if "x" in permissions:
                executable.add(path)
        elif line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Anonymous:"):  # comes after Rss: the mapping's private, written pages
            private = int(line.split()[1]) * 1024
            anonymous += private
            if path and not path.startswith("["):  # a file, not [heap] or [stack]
                file_pages[path] = file_pages.get(path, 0) + rss - private
    libraries = {p for p in executable if not p.endswith(" (deleted)") and not any(p.startswith(f + os.sep) for f in data_folders)}
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


def child_environment(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # glibc: serve every block over 128 KB straight from the kernel and return it when freed, so the
        # resident size follows what is allocated (by default glibc keeps freed blocks up to 32 MB).
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
    }


def kill(process: subprocess.Popen) -> None:
    """Kill the child's process group (anything it may have started included) and reap the child."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


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
