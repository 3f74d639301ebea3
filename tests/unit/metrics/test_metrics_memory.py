"""Memory figures: RSS from /proc, the limit from cgroup v2 / v1 files or RLIMIT_AS."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._metrics import memory as _memory
from tests.unit.metrics.fakes import samples

GiB = 1024**3
V1_NO_LIMIT = "9223372036854771712"  # 2**63 - 4096, what cgroup v1 writes for "no limit"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.fixture
def no_rlimit(monkeypatch: pytest.MonkeyPatch) -> None:
    infinity = resource.RLIM_INFINITY
    monkeypatch.setattr(resource, "getrlimit", lambda which: (infinity, infinity))


def test_rss_from_statm(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/statm", "765 438 410 5 0 123 0")
    assert _memory.resident_bytes(tmp_path) == 438 * os.sysconf("SC_PAGE_SIZE")


def test_rss_falls_back_to_getrusage(tmp_path: Path) -> None:
    assert _memory.resident_bytes(tmp_path) > 0  # no statm under tmp_path


def test_cgroup_v2_limit_and_max(tmp_path: Path, no_rlimit: None) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/")
    write(tmp_path, "sys/fs/cgroup/memory.max", str(2 * GiB))
    assert _memory.read_memory(tmp_path)[1] == 2 * GiB
    write(tmp_path, "sys/fs/cgroup/memory.max", "max")
    assert _memory.cgroup_limit(tmp_path) is None
    assert _memory.memory_limit(tmp_path) == 0


def test_cgroup_v2_nested_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/system.slice/app.service")
    write(tmp_path, "sys/fs/cgroup/memory.max", "max")
    write(tmp_path, "sys/fs/cgroup/system.slice/memory.max", str(1 * GiB))
    write(tmp_path, "sys/fs/cgroup/system.slice/app.service/memory.max", str(4 * GiB))
    assert _memory.cgroup_limit(tmp_path) == 1 * GiB


def test_cgroup_v1_limit_and_sentinel(tmp_path: Path, no_rlimit: None) -> None:
    write(tmp_path, "proc/self/cgroup", "4:memory:/docker/abc\n0::/")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", V1_NO_LIMIT)
    assert _memory.memory_limit(tmp_path) == 0
    write(tmp_path, "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", str(512 * 2**20))
    assert _memory.cgroup_limit(tmp_path) == 512 * 2**20


def test_container_view_without_the_host_path(tmp_path: Path) -> None:
    # /proc/self/cgroup names a host path the container's mount does not have.
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/c1")
    write(tmp_path, "sys/fs/cgroup/memory.max", str(3 * GiB))
    assert _memory.cgroup_limit(tmp_path) == 3 * GiB


def test_rlimit_as_when_no_cgroup_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (8 * GiB, resource.RLIM_INFINITY))
    assert _memory.memory_limit(tmp_path) == 8 * GiB


def test_nothing_known_means_zero(tmp_path: Path, no_rlimit: None) -> None:
    assert _memory.memory_limit(tmp_path) == 0


def test_exposition_reads_the_fake_cgroup(tmp_path: Path, no_rlimit: None) -> None:
    registry = CollectorRegistry()
    m = sg.Metrics("mem", registry=registry)
    m._store.memory_root = str(tmp_path)
    write(tmp_path, "proc/self/statm", "100 50 0 0 0 0 0")
    s = samples(registry)
    assert ("switchgear_memory_limit_bytes", ()) not in s
    assert s[("switchgear_memory_used_bytes", ())] > 0
    write(tmp_path, "sys/fs/cgroup/memory.max", str(GiB))
    assert samples(registry)[("switchgear_memory_limit_bytes", ())] == GiB
    assert m.stats().memory_limit == GiB


def test_the_real_process() -> None:
    used, limit = _memory.read_memory()
    assert used > 1_000_000
    assert limit >= 0
