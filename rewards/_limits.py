"""Resource limits and a network block for sandboxed children (the reward worker and the code-test runner).

Stdlib only, and no imports from the `rewards` package: `rewards.code` sends this file's text to a bare
`python -I -c` child. These limits catch mistakes (a runaway loop, a memory bomb, a huge file); they are not a
security boundary. See docs/rewards.md.
"""
from __future__ import annotations

import math
import os

try:
    import resource
except ImportError:  # pragma: no cover - not Linux/macOS: no limits, the wall-time limit still applies
    resource = None  # type: ignore[assignment]


def _set(limit: int, soft: int) -> None:
    if resource is None:
        return
    try:
        _, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(limit, (soft, hard))
    except (ValueError, OSError):  # e.g. RLIMIT_AS below what is already mapped: keep going without it
        pass


def apply_limits(memory_mb: int | None = 2048, cpu_s: float | None = None, nofile: int = 256,
                 fsize_mb: int = 64) -> None:
    """Limit this process: address space, CPU seconds from now, open files, written file size, no core dumps."""
    if resource is None:
        return
    if memory_mb:
        _set(resource.RLIMIT_AS, int(memory_mb) * 2**20)
    if cpu_s:
        set_cpu_budget(cpu_s)
    _set(resource.RLIMIT_NOFILE, nofile)
    _set(resource.RLIMIT_FSIZE, int(fsize_mb) * 2**20)
    _set(resource.RLIMIT_CORE, 0)


def set_cpu_budget(cpu_s: float) -> None:
    """Allow `cpu_s` more CPU seconds from now (RLIMIT_CPU counts the whole process life, so it is re-armed per call)."""
    if resource is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _set(resource.RLIMIT_CPU, int(math.ceil(used + cpu_s)))


class NetworkDisabled(PermissionError):
    """Raised when sandboxed code opens an internet socket."""


def block_network() -> None:
    """Refuse internet sockets and DNS lookups at the Python level (best effort: C extensions can bypass it)."""
    import socket

    real_socket = socket.socket
    message = "network access is disabled in the reward sandbox"

    class GuardedSocket(real_socket):  # type: ignore[misc, valid-type]
        def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None):
            if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
                raise NetworkDisabled(message)
            super().__init__(family, type, proto, fileno)

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkDisabled(message)

    socket.socket = GuardedSocket  # type: ignore[misc]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]


def quiet_threads_env() -> None:
    """One thread for numeric libraries: thread pools would multiply the address space (RLIMIT_AS) and CPU use."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(var, "1")

