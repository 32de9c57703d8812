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
import ctypes, json, os, sys, threading
sys.path.insert(0, {grader!r})
import confinement

confinement.no_new_privs()
confinement.restrict_files([{readable!r}, "/usr", "/lib", "/lib64", "/etc", "/proc", "/dev", sys.prefix, sys.base_prefix, {grader!r}], [{work!r}])
confinement.forbid_syscalls()
libc = ctypes.CDLL(None, use_errno=True)
tries = {{
    "read the grader's file": lambda: open({secret!r}).read(),
    "write outside the work folder": lambda: open({outside!r}, "w"),
    "write outside, through ctypes": lambda: libc.open({outside!r}.encode(), os.O_CREAT | os.O_WRONLY, 0o600) >= 0 or 1 / 0,
    "link the readable file into the work folder": lambda: os.link({readable_file!r}, os.path.join({work!r}, "link")),
    "fork": os.fork,
    "memfd through ctypes": lambda: libc.memfd_create(b"x", 0) >= 0 or 1 / 0,
    "System V shared memory through ctypes": lambda: libc.shmget(0, 4096, 0o1600) >= 0 or 1 / 0,
    "a socket": lambda: __import__("socket").socket(),
    "signal the parent": lambda: os.kill(os.getppid(), 0),
}}
results = {{}}
for name, attempt in tries.items():
    try:
        attempt()
        results[name] = "allowed"
    except Exception as e:
        results[name] = "refused"
open(os.path.join({work!r}, "ok"), "w").write("written")
results["write in the work folder"] = "allowed"
thread = threading.Thread(target=lambda: results.update({{"a thread": "allowed"}}))
thread.start()
thread.join()
results["read the readable folder"] = "allowed" if open({readable_file!r}).read() == "data" else "refused"
print(json.dumps(results))
"""


@pytest.mark.skipif(landlock_abi() < 1, reason="no Landlock in this kernel")
def test_a_confined_process_can_read_and_write_only_what_it_was_given(tmp_path):
    work, readable, secret = tmp_path / "work", tmp_path / "readable", tmp_path / "secret.txt"
    work.mkdir()
    readable.mkdir()
    (readable / "data.txt").write_text("data")
    secret.write_text("weights")
    code = TRIES.format(grader=str(GRADER), readable=str(readable), readable_file=str(readable / "data.txt"), work=str(work), secret=str(secret), outside=str(tmp_path / "outside"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    allowed = {name for name, outcome in results.items() if outcome == "allowed"}
    assert allowed == {"write in the work folder", "a thread", "read the readable folder"}, results
    assert not (tmp_path / "outside").exists()
