"""
What the kernel enforces on the part's process (Linux), set up from inside it through ctypes before
the submission is imported, and kept for the rest of its life: no restriction here can be lifted.

- no_new_privs: exec can never gain privileges again (PR_SET_NO_NEW_PRIVS), which Landlock and
  seccomp require of an unprivileged process;
- drop_capabilities: a process run as root keeps none of root's capabilities;
- restrict_files (Landlock, Linux 5.13+): only the folders named can be read, nothing written; no
  TCP (ABI 4+), no signals or abstract Unix sockets beyond the process (ABI 6+), and no other
  process's memory (Landlock refuses tracing across its domains);
- forbid_syscalls (seccomp): no new processes, no programs, no sockets; no file written, made,
  renamed or removed (the handout: the online grader disables file writing), so nothing a part does
  outlives it on disk and no part can fill one; none of the kernel's stores that keep data outside
  the process's own memory (System V and POSIX shared memory, message queues, memfd, keyrings); no
  signal to any process but this one, and no other process's memory; no eviction of a file's cached
  pages and no asking whether they are cached (a loading process could leave the answering one bits
  in the page cache); no file locks (two live processes could talk through them); no change to a
  file's times, mode, owner, flags or attributes (root owns root's files); none of root's own calls
  (namespaces, mounts, modules, bpf, perf, open by handle).

Each returns what it achieved, or raises Unavailable saying why not; the grader reports it.
This file runs in the part's process, so it imports nothing but the standard library.
"""

import ctypes
import errno
import os
import platform
import struct

LIBC = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None  # the C library (Windows has none to name)
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAPBSET_DROP, CAPABILITY_VERSION_3 = 24, 0x20080522
CAPSET = {"x86_64": 126, "aarch64": 91}
LANDLOCK_SYSCALLS = 444, 445, 446  # create_ruleset, add_rule, restrict_self: the same number on every architecture


class Unavailable(Exception):
    """This kernel, architecture or system does not offer the protection."""


def _syscall(number: int, *args) -> int:
    result = LIBC.syscall(ctypes.c_long(number), *args)
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def drop_capabilities() -> str:
    """
    Root's powers gone for good (a part runs as root where other users cannot read the grader's
    Python): every capability out of the bounding set, then out of the process's own sets. It keeps
    what owning root's files allows, which Landlock limits; not reading every file, mounting, loading
    modules or opening a file by handle around Landlock.
    """
    if platform.system() != "Linux":
        raise Unavailable("not Linux")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "none held"
    for capability in range(64):  # past the last one the kernel knows: EINVAL
        if LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise Unavailable(f"prctl(PR_CAPBSET_DROP): {os.strerror(ctypes.get_errno())}")
    header = struct.pack("Ii", CAPABILITY_VERSION_3, 0)  # this process
    _syscall(
        CAPSET[platform.machine().lower()], ctypes.c_char_p(header), ctypes.c_char_p(bytes(24))
    )  # effective, permitted, inheritable: none
    return "all dropped (root's)"


def no_new_privs() -> None:
    if platform.system() != "Linux":
        raise Unavailable("not Linux")
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise Unavailable(os.strerror(ctypes.get_errno()))


# --- Landlock -----------------------------------------------------------------------------------

READ_ACCESS = 1 << 0 | 1 << 2 | 1 << 3  # execute, read a file, read a directory
# Every right to the file system ABI 1 knows: what is not granted below is refused. Linking or
# renaming across folders (REFER, ABI 2) is refused by not being granted: a hard link of the
# checkpoint would outlive its removal.
FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = 1 << 0 | 1 << 2  # execute, read: a file takes only rights on its content


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0: none)."""
    if platform.system() != "Linux":
        return 0
    try:
        return _syscall(LANDLOCK_SYSCALLS[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # 1: LANDLOCK_CREATE_RULESET_VERSION
    except OSError:
        return 0


def restrict_files(readable: list[str]) -> int:
    """Allow reading only beneath `readable`, and writing nowhere; returns the ABI used."""
    abi = landlock_abi()
    if abi < 1:
        raise Unavailable("no Landlock in this kernel (Linux 5.13+, enabled at boot)")
    handled_fs = FS_RIGHTS[max(v for v in FS_RIGHTS if v <= abi)]
    handled_net = 0b11 if abi >= 4 else 0  # bind and connect to TCP ports
    scoped = 0b11 if abi >= 6 else 0  # abstract Unix sockets and signals, beyond this process and its threads
    attr = struct.pack("QQQ", handled_fs, handled_net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = _syscall(LANDLOCK_SYSCALLS[0], ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    try:
        for path in readable:
            _allow(ruleset, path, READ_ACCESS)
        _syscall(LANDLOCK_SYSCALLS[2], ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            access &= FILE_RIGHTS
        rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr, packed
        _syscall(LANDLOCK_SYSCALLS[1], ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.c_char_p(rule), ctypes.c_uint32(0))  # 1: PATH_BENEATH
    finally:
        os.close(fd)


# --- seccomp ------------------------------------------------------------------------------------

# System call numbers per architecture: (audit architecture, {name: number}). aarch64 has no open,
# creat, mkdir, link, symlink, rename, unlink, rmdir, chmod or chown: only their *at forms.
SYSCALLS = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "socket": 41, "socketpair": 53, "shmget": 29, "msgget": 68,
        "semget": 64, "mq_open": 240, "memfd_create": 319, "memfd_secret": 447, "add_key": 248, "request_key": 249,
        "keyctl": 250, "userfaultfd": 323, "io_uring_setup": 425, "kcmp": 312, "pidfd_open": 434, "pidfd_getfd": 438,
        "pidfd_send_signal": 424, "tkill": 200, "open": 2, "openat": 257, "creat": 85, "openat2": 437, "mknod": 133,
        "mknodat": 259, "mkdir": 83, "mkdirat": 258, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266,
        "rename": 82, "renameat": 264, "renameat2": 316, "truncate": 76, "unlink": 87, "unlinkat": 263, "rmdir": 84,
        "chmod": 90, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "lchown": 94, "fchownat": 260,
        "kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "fadvise64": 221, "readahead": 187, "mincore": 27, "cachestat": 451, "process_madvise": 440, "madvise": 28,
        "preadv2": 327, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "bpf": 321, "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "iopl": 172, "ioperm": 173,
        "reboot": 169, "swapon": 167, "swapoff": 168, "fcntl": 72, "flock": 73, "io_setup": 206, "io_submit": 209,
        "fchmod": 91, "fchown": 93, "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188,
        "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
        "setxattrat": 463, "removexattrat": 466, "file_setattr": 469, "ioctl": 16, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "socket": 198, "socketpair": 199, "shmget": 194, "msgget": 186, "semget": 190,
        "mq_open": 180, "memfd_create": 279, "memfd_secret": 447, "add_key": 217, "request_key": 218, "keyctl": 219,
        "userfaultfd": 282, "io_uring_setup": 425, "kcmp": 272, "pidfd_open": 434, "pidfd_getfd": 438,
        "pidfd_send_signal": 424, "tkill": 130, "openat": 56, "openat2": 437, "mknodat": 33, "mkdirat": 34,
        "linkat": 37, "symlinkat": 36, "renameat": 38, "renameat2": 276, "truncate": 45, "unlinkat": 35,
        "fchmodat": 53, "fchmodat2": 452, "fchownat": 54,
        "kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "fadvise64": 223, "readahead": 213, "mincore": 232, "cachestat": 451, "process_madvise": 440, "madvise": 233,
        "preadv2": 286, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "bpf": 280, "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "reboot": 142,
        "swapon": 224, "swapoff": 225, "fcntl": 25, "flock": 32, "io_setup": 0, "io_submit": 2,
        "fchmod": 52, "fchown": 55, "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
        "lremovexattr": 15, "fremovexattr": 16, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469, "ioctl": 29,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442,
    }),
}  # fmt: skip
# Allowed only with these arguments: the flags of an open for reading (argument 1 of open, 2 of openat),
# and signals to this process alone (argument 0: the pid or thread group). Every other call named is refused.
OPEN_FLAGS = {"open": 1, "openat": 2}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
SIGNALS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# The page cache outlives a process: a loading process that evicted or loaded pages of a file the answering process
# can read would leave it bits. So no call that evicts pages (fadvise, madvise's MADV_COLD and MADV_PAGEOUT) or asks
# whether they are cached without loading them (mincore, cachestat, preadv2's RWF_NOWAIT, Linux's own AIO).
MADVISE_EVICTS = (20, 21)  # MADV_COLD, MADV_PAGEOUT: argument 2 of madvise
RWF_NOWAIT = 0x8  # argument 5 of preadv2
# A lock on a file anyone may read is seen by every process that asks (F_GETLK gives its place and length: 64 bits
# a lock): two live processes could talk through them. So no record locks, leases or notifications (argument 1 of
# fcntl: F_GETLK, F_SETLK, F_SETLKW, their OFD forms, F_SETLEASE, F_GETLEASE, F_NOTIFY), and no flock.
FCNTL_LOCKS = (5, 6, 7, 36, 37, 38, 1024, 1025, 1026)
# A file's metadata outlives the process too, and Landlock does not guard it: a part run as root owns root's files, and
# could change their times, modes, owners or attributes. So none of those calls, nor ioctl's inode flags and extended
# attributes (FS_IOC_SETFLAGS, its 32-bit form, FS_IOC_FSSETXATTR: argument 1 of ioctl).
IOCTL_SETS_FLAGS = (0x40086602, 0x40046602, 0x401C5820)
CLONE_THREAD = 0x10000
ALLOW, KILL = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
EPERM, ENOSYS = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO with the error
LOAD, JUMP_IF_EQUAL, JUMP_IF_BITS, RETURN = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JSET|K, BPF_RET|K
X32_BIT = 0x40000000


def argument(k: int) -> int:
    """Where the low 32 bits of a system call's argument k lie in struct seccomp_data (little-endian)."""
    return 16 + 8 * k


def forbid_syscalls() -> list[str]:
    """
    Refuse (EPERM) the system calls in SYSCALLS for every thread, now and later; returns their names.
    clone is allowed only for threads, and clone3 answers "not implemented", so that glibc starts
    threads with clone, whose flags a filter can read. A file may be opened for reading only, and a
    signal sent only to this process (its pid, fixed here: the process never forks again).
    """
    machine = platform.machine().lower()
    if platform.system() != "Linux" or machine not in SYSCALLS:
        raise Unavailable(f"no system call table here for {platform.system()} {machine}")
    arch, numbers = SYSCALLS[machine]
    program = [
        (LOAD, 0, 0, 4), (JUMP_IF_EQUAL, 1, 0, arch), (RETURN, 0, 0, KILL),  # another architecture's calls: never
        (LOAD, 0, 0, 0),  # the system call's number
    ]  # fmt: skip
    if machine == "x86_64":
        program += [(JUMP_IF_BITS, 0, 1, X32_BIT), (RETURN, 0, 0, EPERM)]  # the x32 variants of every call
    program += [(JUMP_IF_EQUAL, 0, 1, numbers["clone3"]), (RETURN, 0, 0, ENOSYS)]
    program += [
        (JUMP_IF_EQUAL, 0, 3, numbers["clone"]),
        (LOAD, 0, 0, argument(0)),
        (JUMP_IF_BITS, 1, 0, CLONE_THREAD),
        (RETURN, 0, 0, EPERM),
    ]
    program.append((LOAD, 0, 0, 0))  # back to the number (a thread's clone lands here too, and is allowed below)
    for name, k in OPEN_FLAGS.items():
        if name in numbers:  # an open for writing is refused; one for reading allowed
            program += [
                (JUMP_IF_EQUAL, 0, 4, numbers[name]),
                (LOAD, 0, 0, argument(k)),
                (JUMP_IF_BITS, 1, 0, WRITE_FLAGS),
                (RETURN, 0, 0, ALLOW),
                (RETURN, 0, 0, EPERM),
            ]
    for name in SIGNALS:  # to this process: allowed; to any other: refused
        program += [
            (JUMP_IF_EQUAL, 0, 4, numbers[name]),
            (LOAD, 0, 0, argument(0)),
            (JUMP_IF_EQUAL, 0, 1, os.getpid()),
            (RETURN, 0, 0, ALLOW),
            (RETURN, 0, 0, EPERM),
        ]
    program += refuse_values(numbers["madvise"], 2, MADVISE_EVICTS) + refuse_values(numbers["fcntl"], 1, FCNTL_LOCKS)
    program += refuse_values(numbers["ioctl"], 1, IOCTL_SETS_FLAGS)
    program += [
        (JUMP_IF_EQUAL, 0, 4, numbers["preadv2"]),
        (LOAD, 0, 0, argument(5)),
        (JUMP_IF_BITS, 1, 0, RWF_NOWAIT),
        (RETURN, 0, 0, ALLOW),
        (RETURN, 0, 0, EPERM),
    ]
    limited = ("clone", "clone3", *OPEN_FLAGS, *SIGNALS, "madvise", "fcntl", "ioctl", "preadv2")
    refused = {name: nr for name, nr in numbers.items() if name not in limited}
    for nr in refused.values():
        program += [(JUMP_IF_EQUAL, 0, 1, nr), (RETURN, 0, 0, EPERM)]
    program.append((RETURN, 0, 0, ALLOW))
    install(program)
    return sorted(name for name in numbers if name not in ("clone", "clone3"))


def refuse_values(number: int, k: int, values: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """The system call `number` refused (EPERM) when its argument k is one of `values`, allowed otherwise."""
    block = [(JUMP_IF_EQUAL, 0, len(values) + 3, number), (LOAD, 0, 0, argument(k))]
    block += [(JUMP_IF_EQUAL, len(values) - i, 0, value) for i, value in enumerate(values)]  # to the EPERM below
    return block + [(RETURN, 0, 0, ALLOW), (RETURN, 0, 0, EPERM)]


def install(program: list[tuple[int, int, int, int]]) -> None:
    """Install a seccomp filter (BPF instructions) on every thread of this process, for good."""
    machine = platform.machine().lower()
    filters = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(filters)
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))  # struct sock_fprog, native alignment
    # seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog): on every thread of the process at once.
    seccomp = {"x86_64": 317, "aarch64": 277}[machine]
    try:
        _syscall(seccomp, ctypes.c_uint(1), ctypes.c_uint(1), ctypes.c_char_p(fprog))
    except OSError as e:
        raise Unavailable(f"seccomp refused: {e.strerror}") from None
