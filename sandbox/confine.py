"""Kernel-level limits on the worker's processes, beyond the PID namespace (executor.py).

Where the fork server is PID 1 of its own PID and mount namespace, it makes every mount it sees
read-only except its own directory (the evaluations' workdirs) and the build cache, so a
candidate cannot rewrite kagent's code (the verifier loads it), the run archive or anything
else on disk. It also makes itself non-dumpable (no ptrace, no /proc/PID/mem from a process
without CAP_SYS_PTRACE). Each evaluation's child then drops every capability for good (bounding
set, effective, permitted, inheritable; no_new_privs), so a candidate running as root, real or
mapped, can neither remount the filesystem writable nor ptrace the server.
"""

from __future__ import annotations

import ctypes
import os
import re

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
