"""Kernel-level limits on the worker's processes, beyond the PID namespace (executor.py).

Where the fork server is PID 1 of its own PID and mount namespace, it makes every mount it sees
read-only except its own directory (the evaluations' workdirs) and the build cache, so a
candidate cannot rewrite kagent's code (the verifier loads it), the run archive or anything
else on disk. It also makes itself non-dumpable (no ptrace, no /proc/PID/mem from a process
without CAP_SYS_PTRACE). Each evaluation's child then drops every capability for good (bounding
set, effective, permitted, inheritable; no_new_privs), so a candidate running as root, real or
mapped, can neither remount the filesystem writable nor ptrace the server.

Process creation is refused by a seccomp filter (`ProcessFilter`) that a C++ evaluation
installs in its own process before the candidate is imported: native code cannot fork, exec or
ptrace, whatever it calls, while threads stay allowed.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
ST_NOATIME, ST_RELATIME = 1024, 4096
# statvfs flags kept on a read-only remount (a user namespace may not clear them): ST_* -> MS_*
KEPT_FLAGS = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, ST_NOATIME: MS_NOATIME, 2048: MS_NODIRATIME,
              ST_RELATIME: MS_RELATIME}
CAP_VERSION_3 = 0x20080522


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> bool:
    """Linux prctl(2). False where it failed or does not exist."""
    try:
        return _libc().prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _mount(source: str | None, target: str, flags: int) -> None:
    encode = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc().mount(encode(source), encode(target), None, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _mount_points() -> list[str]:
    """Every mount point this process sees (/proc/self/mountinfo, field 5, octal-escaped)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def lock_filesystem(writable: list[str]) -> list[str]:
    """Make every mount read-only but `writable` (bind-mounted onto themselves first). Only in
    a mount namespace of our own: elsewhere this would change the host. Raises OSError if the
    root cannot be locked; returns the other mounts that could not be, with why (one the new
    /proc hides, such as a host's /proc/sys/fs/binfmt_misc, is no longer a mount point here)."""
    _mount(None, "/", MS_REC | MS_PRIVATE)  # nothing below propagates out of this namespace
    keep = []
    for path in writable:
        path = os.path.realpath(path)
        os.makedirs(path, exist_ok=True)
        _mount(path, path, MS_BIND | MS_REC)
        keep.append(path)
    skipped: list[str] = []
    for point in _mount_points():
        if point in keep or any(point.startswith(k + "/") for k in keep):
            continue
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue  # hidden by a later mount, or gone
        kept = sum(ms for st, ms in KEPT_FLAGS.items() if flags & st)
        if not flags & (ST_NOATIME | ST_RELATIME):
            kept |= MS_STRICTATIME  # what no flag means; left out, the kernel would pick relatime
        try:
            _mount(None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except OSError as err:
            if point == "/":
                raise
            skipped.append(f"{point}: {err.strerror}")
    return skipped


def create_gpu_device_nodes() -> None:
    """The CUDA driver creates /dev/nvidia-uvm on first use through the setuid nvidia-modprobe,
    which a process without privileges cannot run: create it before dropping them."""
    import glob
    import shutil
    import subprocess

    modprobe = shutil.which("nvidia-modprobe")
    if glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/nvidia-uvm") and modprobe:
        try:
            subprocess.run([modprobe, "-u", "-c=0"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass  # then CUDA fails in the candidate, and says so in its verdict


def drop_privileges() -> None:
    """No capability, now or after any exec. Raises OSError if the kernel refuses."""
    if not prctl(PR_SET_NO_NEW_PRIVS, 1):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63  # every bit a capability set has: dropping an unknown one just fails
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)  # fails without CAP_SETPCAP: then there is nothing to drop

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    if _libc().capset(ctypes.byref(Header(CAP_VERSION_3, 0)), (Data * 2)()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")


# -- process creation from native code ----------------------------------------------------------

# A seccomp filter (Linux's seccomp(2), classic BPF over the system call number and arguments)
# and the SIGSYS handler it reports to, as C: the handler must set the refused call's return
# value in the interrupted thread's registers, which no Python code can do. Threads stay allowed
# (clone with CLONE_THREAD: OpenMP, torch's pools); new processes are not: fork, vfork, clone
# without CLONE_THREAD, execve, execveat (hence system, popen, posix_spawn), nor ptrace or
# process_vm_writev on another process. Each returns -1 with errno EPERM to the caller and is
# counted. clone3 answers ENOSYS, so glibc creates threads through clone, whose flags a filter
# can read (clone3's are behind a pointer). A call through another ABI (int 0x80, x32) is
# refused the same way: its numbers are not the ones checked.
REFUSE_PROCESSES_CPP = r"""
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__x86_64__)
#define KAGENT_ARCH AUDIT_ARCH_X86_64
#define KAGENT_RETURN(uc) (uc)->uc_mcontext.gregs[REG_RAX]
#elif defined(__aarch64__)
#define KAGENT_ARCH AUDIT_ARCH_AARCH64
#define KAGENT_RETURN(uc) (uc)->uc_mcontext.regs[0]
#else
#error "no seccomp filter for this architecture"
#endif

static volatile int64_t refused = 0;
static volatile int last_call = -1;

static void on_sigsys(int, siginfo_t* info, void* context) {
    KAGENT_RETURN(static_cast<ucontext_t*>(context)) = -EPERM;
    last_call = info->si_syscall;
    __atomic_add_fetch(&refused, 1, __ATOMIC_SEQ_CST);
}

#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define TRAP_IF(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP)

extern "C" int64_t kagent_refused(void) { return refused; }
extern "C" int64_t kagent_last_refused(void) { return last_call; }
// Whether SIGSYS still goes to on_sigsys (native code may have replaced it: then it can get
// its refused calls reported as successes).
extern "C" int64_t kagent_handler_intact(void) {
    struct sigaction current = {};
    return sigaction(SIGSYS, nullptr, &current) == 0 && (current.sa_flags & SA_SIGINFO)
        && current.sa_sigaction == on_sigsys;
}

// 0, or the errno of the step that failed.
extern "C" int64_t kagent_refuse_processes(void) {
    struct sigaction action = {};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, nullptr) != 0) return errno;
    struct sock_filter filter[] = {
        LOAD(arch),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KAGENT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        LOAD(nr),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),  // the x32 ABI
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        TRAP_IF(__NR_fork),
        TRAP_IF(__NR_vfork),
#endif
        TRAP_IF(__NR_execve),
        TRAP_IF(__NR_execveat),
        TRAP_IF(__NR_ptrace),
        TRAP_IF(__NR_process_vm_writev),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435 /* clone3 */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),  // flags, low half
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    // TSYNC: every thread already running (OpenMP's pool, started by the reference) too.
    long failed = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
    return failed == 0 ? 0 : failed > 0 ? ESRCH : errno;
}
"""
# Names of the refused calls, by number (x86_64, aarch64), for the verdict's message.
SYSCALL_NAMES = {
    "x86_64": {56: "clone", 57: "fork", 58: "vfork", 59: "execve", 322: "execveat", 101: "ptrace",
               311: "process_vm_writev"},
    "aarch64": {220: "clone", 221: "execve", 281: "execveat", 117: "ptrace", 271: "process_vm_writev"},
}


# The filter's library, loaded by the fork server (zygote.py) and inherited by every evaluation;
# else why not.
filter_library: ctypes.CDLL | None = None
filter_missing = "not loaded by the fork server"


def load_process_filter(compile_to: Callable[[str, str], Path]) -> None:
    """In the fork server, before it serves: build the filter's library afresh with
    `compile_to(source, directory)` (never taken from the build cache, where a candidate could
    have planted one), and load it from a sealed memfd that is then closed, so no evaluation
    can change the code the next one installs. Raises OSError or the compiler's error."""
    global filter_library
    with tempfile.TemporaryDirectory(prefix="kagent-filter-") as tmp:
        data = Path(compile_to(REFUSE_PROCESSES_CPP, tmp)).read_bytes()
    fd = os.memfd_create("kagent-process-filter", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        filter_library = ctypes.CDLL(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


class ProcessFilter:
    """The seccomp filter above, installed in this process for good (a filter cannot be
    removed, and children would inherit it). `refused()` says what it refused so far. Raises
    OSError where it cannot be installed."""

    def __init__(self):
        if filter_library is None:
            raise OSError(f"no seccomp filter: {filter_missing}")
        self._lib = filter_library
        for name in ("kagent_refuse_processes", "kagent_refused", "kagent_last_refused", "kagent_handler_intact"):
            getattr(self._lib, name).restype = ctypes.c_int64
        failed = self._lib.kagent_refuse_processes()
        if failed:
            raise OSError(failed, f"seccomp filter not installed: {os.strerror(failed)}")

    def refused(self) -> str | None:
        """None, or which call was refused and how often, as words for a verdict."""
        count = self._lib.kagent_refused()
        if not count:
            return None if self._lib.kagent_handler_intact() else "a SIGSYS handler of its own (hiding refused system calls)"
        number = self._lib.kagent_last_refused()
        name = SYSCALL_NAMES.get(os.uname().machine, {}).get(number, f"system call {number}")
        times = "" if count == 1 else f", {count} refused calls"
        return f"{name}() from native code (creating or controlling a process: refused by the OS{times})"
