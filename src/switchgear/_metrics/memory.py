"""Process memory: resident bytes used, and the limit the process runs under.

Where the two figures come from:

* used  = resident set size (Linux ``/proc/self/statm`` × page size; elsewhere the peak RSS
  from ``getrusage``, the best portable figure);
* limit = the tightest cgroup memory limit on the way from the process's cgroup to the root
  (v2 ``memory.max``, v1 ``memory.limit_in_bytes``; ``max`` and v1's huge sentinel mean "no
  limit"), else ``RLIMIT_AS`` when it is finite, else 0 (= no limit known).

Every path hangs off ``root`` so tests can build a fake ``/proc`` and ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

__all__ = ["cgroup_limit", "memory_limit", "read_memory", "resident_bytes"]

# cgroup v1 writes "no limit" as a page-aligned 2**63 - 1; anything this large is no limit.
_NO_LIMIT_FLOOR = 2**60


def _read(path: Path) -> str | None:
    # Bytes, decoded by the built-in ASCII decoder: a text-mode open looks the codec up
    # through an import, and a forked child can inherit that import's lock held by a thread
    # that did not survive the fork.
    try:
        return path.read_bytes().decode("ascii", "replace").strip()
    except OSError:
        return None


def resident_bytes(root: str | os.PathLike[str] = "/") -> int:
    """Resident memory of this process in bytes (0 if it cannot be read)."""
    statm = _read(Path(root, "proc/self/statm"))
    if statm:
        fields = statm.split()
        if len(fields) > 1 and fields[1].isdigit():
            return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux and the BSDs report KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _cgroup_paths(root: Path) -> tuple[PurePosixPath | None, PurePosixPath | None]:
    """This process's cgroup path in the v2 hierarchy and in the v1 memory hierarchy."""
    v2: PurePosixPath | None = None
    v1: PurePosixPath | None = None
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = PurePosixPath(path or "/")
        elif "memory" in controllers.split(","):
            v1 = PurePosixPath(path or "/")
    return v2, v1


def _parse_limit(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None  # missing, or v2's "max"
    value = int(text)
    return value if 0 < value < _NO_LIMIT_FLOOR else None


def _tightest(base: Path, cgroup: PurePosixPath | None, filename: str) -> int | None:
    """The smallest limit set on ``cgroup`` or any ancestor below ``base``.

    Inside a container the path in /proc/self/cgroup may not exist under the mount (the
    mount is the container's own root), so the walk always ends at ``base`` itself.
    """
    parts = cgroup.parts[1:] if cgroup is not None and cgroup.is_absolute() else ()
    limits = []
    for depth in range(len(parts), -1, -1):
        limit = _parse_limit(_read(base.joinpath(*parts[:depth], filename)))
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def cgroup_limit(root: str | os.PathLike[str] = "/") -> int | None:
    """The cgroup memory limit in bytes, or ``None`` when there is none (or no cgroups)."""
    base = Path(root)
    v2, v1 = _cgroup_paths(base)
    cgroup = base / "sys/fs/cgroup"
    limit = _tightest(cgroup, v2, "memory.max")
    if limit is None:
        limit = _tightest(cgroup / "memory", v1, "memory.limit_in_bytes")
    return limit


def memory_limit(root: str | os.PathLike[str] = "/") -> int:
    """The memory limit in bytes: cgroup, else a finite ``RLIMIT_AS``, else 0 (no limit)."""
    limit = cgroup_limit(root)
    if limit is not None:
        return limit
    try:
        import resource
    except ImportError:  # Windows
        return 0
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return 0 if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def read_memory(root: str | os.PathLike[str] = "/") -> tuple[int, int]:
    """``(used, limit)`` in bytes; ``limit`` is 0 when no limit is known."""
    return resident_bytes(root), memory_limit(root)
