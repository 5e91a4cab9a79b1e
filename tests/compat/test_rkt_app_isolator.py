"""rkt's tests/rkt_app_isolator_test.go (and rkt_app_isolator_nspawn_test.go's TestCgroups):
an app's memory limit, CPU quota and CPU shares, from the image's isolators or
`--memory` / `--cpu` / `--cpu-shares`, as the app reads them in its own cgroup."""

from __future__ import annotations

import pytest
from rktcompat import ImageMaker, Rkt, on

READ = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || "
        "{ cat /sys/fs/cgroup/memory.max; cut -d' ' -f1 /sys/fs/cgroup/cpu.max; "
        "cat /sys/fs/cgroup/cpu.weight; }")
ISOLATORS = [{"name": "resource/memory", "value": {"limit": "25Mi"}},
             {"name": "resource/cpu", "value": {"limit": "800m"}},
             {"name": "os/linux/cpu-shares", "value": 1024}]  # fmt: skip


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_app_isolators(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    image = str(make_image(app={"exec": ["/bin/sh", "-c", READ], "isolators": ISOLATORS}))
    cp = rkt.run(image)
    assert cp.returncode == 0, cp.stderr
    mem, quota, shares = cp.stdout.split()
    v1 = shares == "1024"
    assert int(mem) == 25 << 20
    assert int(quota) == 80000  # 800m: 80 ms of each 100 ms period
    cp = rkt.run(image, "--memory", "42Mi", "--cpu", "900m", "--cpu-shares", "2048")
    mem, quota, shares = cp.stdout.split()
    assert (int(mem), int(quota)) == (42 << 20, 90000)
    assert shares == ("2048" if v1 else str(1 + (2048 - 2) * 9999 // 262142))
