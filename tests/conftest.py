"""Test-suite wide rules.

Tests that need root, QEMU, the CNI plugins or a registry carry a marker (`root`, `qemu`,
`cni`, `registry`, `lkvm`). Where the need is not met they are skipped with the reason;
in CI (`CI=true`) such a skip is turned into a failure, because CI machines have all of
them: only `lkvm` (no kvmtool package exists here) may skip there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
MAY_SKIP_IN_CI = {"lkvm"}


def _missing(marker: str) -> str | None:
    if marker == "root" and os.geteuid() != 0:
        return "needs root"
    if marker == "qemu" and not shutil.which("qemu-system-x86_64"):
        return "needs qemu-system-x86_64 (Debian qemu-system-x86)"
    if marker == "cni" and not (
        Path("/usr/lib/cni/ptp").exists() and shutil.which("iptables")
    ):
        return "needs /usr/lib/cni plugins and iptables"
    if marker == "registry" and not (
        shutil.which("docker-registry") and shutil.which("skopeo")
    ):
        return "needs docker-registry and skopeo"
    if marker == "lkvm" and not shutil.which("lkvm"):
        return "needs an lkvm (kvmtool) binary on the PATH; none is packaged for Debian"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for m in ("root", "qemu", "cni", "registry", "lkvm"):
            if item.get_closest_marker(m) is None:
                continue
            reason = _missing(m)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"[{m}] {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    if any(item.get_closest_marker(m) for m in MAY_SKIP_IN_CI):
        return
    needs = {m for m in ("root", "qemu", "cni", "registry") if item.get_closest_marker(m)}
    if needs:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where {sorted(needs)} must run: {report.longrepr}"


# Shared fixtures (test registry, test images) live in tests/support/.
pytest_plugins = ["support.fixtures", "support.built"]


# host-local (the CNI IPAM plugin) keeps a folder per network name under
# /var/lib/cni/networks even after every lease is released; tests make networks with
# random names, so the session removes the lease-free folders it added.
_CNI_IPAM = Path("/var/lib/cni/networks")
_ipam_before: set[str] = set()
# VM templates keep their RAM files in a tmpfs folder shared by every data dir
# (stage1/kvm/templates/store.py: RAM_ROOT); a test whose data dir is left to pytest
# (no `rkt gc`) leaves its templates' RAM there: the session removes those it added for
# data dirs in its own temporary folder (KEY-X.owner names them), not another session's.
_KVM_TEMPLATE_RAM = Path("/dev/shm/pyrkt-kvm-templates")


def _remove_template_ram_under(folder: Path) -> None:
    """The RAM files of templates made under folder (a data dir there)."""
    if not _KVM_TEMPLATE_RAM.is_dir():
        return
    prefix = str(folder) + "/"
    for owner in _KVM_TEMPLATE_RAM.glob("*.owner"):
        try:
            mine = owner.read_text().startswith(prefix)
        except OSError:
            continue
        if mine:
            owner.with_suffix(".ram").unlink(missing_ok=True)
            owner.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _template_ram_of_the_test(tmp_path: Path) -> Iterator[None]:
    """After each test, the RAM of the templates its own data dirs made (31 MB each on a
    tmpfs: a whole run would otherwise hold gigabytes until the session ends)."""
    yield
    _remove_template_ram_under(tmp_path)


_CGROUPS = Path("/sys/fs/cgroup")


def _pod_cgroups() -> set[Path]:
    """The pods' cgroups (pyrkt.linux.cgroup: HIERARCHY/pyrkt/UUID) on this host."""
    return {d for d in _CGROUPS.glob("*/pyrkt/*-*-*-*-*") if d.is_dir()}


def _empty(group: Path) -> bool:
    try:
        return not any((d / "cgroup.procs").read_text().strip()
                       for d in (group, *(x for x in group.iterdir() if x.is_dir())))
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _no_pod_cgroup_left(tmp_path: Path) -> Iterator[None]:
    """After each test (and its fixtures' teardown, `rkt gc` included), no empty cgroup
    of a pod whose folder is in the test's own folder: what `rkt gc` or the pod's end
    must remove (a process still in one: a pod still ending, not counted)."""
    before = _pod_cgroups()
    yield
    mine = [d for d in _pod_cgroups() - before if any(tmp_path.glob(f"**/pods/*/{d.name}"))]
    deadline = time.monotonic() + 10  # a QEMU killed by the teardown, not reaped yet
    while any(d.is_dir() and not _empty(d) for d in mine) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [d for d in mine if d.is_dir() and _empty(d)]
    for d in left:  # reported, and removed: the next tests start clean
        for leaf in (x for x in d.iterdir() if x.is_dir()):
            leaf.rmdir()
        d.rmdir()
    assert not left, f"pod cgroups left behind (no `rkt gc`?): {sorted(map(str, left))}"


def _sweep_template_ram(session: pytest.Session) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or not _KVM_TEMPLATE_RAM.is_dir():
        return
    _remove_template_ram_under(factory.getbasetemp())


def pytest_sessionstart(session: pytest.Session) -> None:
    if _CNI_IPAM.is_dir():
        _ipam_before.update(p.name for p in _CNI_IPAM.iterdir())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _sweep_template_ram(session)
    if not _CNI_IPAM.is_dir():
        return
    for folder in _CNI_IPAM.iterdir():
        if folder.name in _ipam_before or not folder.is_dir():
            continue
        names = {p.name for p in folder.iterdir()}
        if all(n == "lock" or n.startswith("last_reserved_ip") for n in names):
            shutil.rmtree(folder, ignore_errors=True)
