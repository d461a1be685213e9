"""The processes around an evaluation, seen from the parent: the process tree under the fork
server (found from /proc, so a candidate's daemon that left its process group is still found),
its memory, killing it, and the JSON-lines pipes the servers answer on. Never imports torch."""

from __future__ import annotations

import json
import os
import select
import signal
import time

def _children(pid: int) -> list[int]:
    if not HAS_CHILDREN_FILES:
        return _parent_map().get(pid, [])
    kids: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            pass
    return kids


HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _parent_map() -> dict[int, list[int]]:
    """ppid -> pids, from every /proc/PID/stat (for kernels without /proc/.../children)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    """Every process below `root`. The worker is a child subreaper (or PID 1 of its namespace),
    so a process whose parent died is re-parented to it and stays in this tree."""
    tree = None if HAS_CHILDREN_FILES else _parent_map()
    found: list[int] = []
    seen = {root}
    frontier = [root]
    while frontier:
        kids = [k for p in frontier for k in (tree.get(p, []) if tree is not None else _children(p))]
        frontier = [k for k in kids if k not in seen]
        seen.update(frontier)
        found += frontier
    return found


def pid_alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def kill_tree(root: int, patience_s: float = 2.0) -> bool:
    """SIGKILL everything below `root` until nothing is left running (a fork bomb keeps
    forking until its last process is dead). True when the tree is empty."""
    deadline = time.monotonic() + patience_s
    while True:
        living = [pid for pid in descendants(root) if pid_alive(pid)]
        if not living:
            return True
        for pid in living:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Messages:
    """JSON lines from the worker's stdout, read from the raw pipe: a buffered reader could
    swallow a second line that `select` would then never report."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""
        self.closed = False

    def read(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # not ours: a library printing at import
                if isinstance(message, dict):
                    return message
            if self.closed:
                return None
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def about(self, job_id: str, timeout: float) -> dict | None:
        """The next message about this job; messages about any other are stale."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.0, deadline - time.monotonic()))
            if message is None or message.get("id") == job_id:
                return message
