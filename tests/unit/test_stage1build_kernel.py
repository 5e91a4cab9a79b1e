"""Guest kernel selection: the tailored config fragment, its cache key, the distro fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.stage1.build import kernel

# What the guest must have built in (MACHINE-FACTS / the kvm flavor's needs).
REQUIRED = [
    "CONFIG_64BIT", "CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_BLK",
    "CONFIG_9P_FS", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS_POSIX_ACL", "CONFIG_VIRTIO_NET",
    "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_VSOCKETS", "CONFIG_OVERLAY_FS", "CONFIG_TMPFS",
    "CONFIG_DEVTMPFS", "CONFIG_MEMCG", "CONFIG_CPUSETS", "CONFIG_CGROUP_PIDS",
    "CONFIG_PID_NS", "CONFIG_NET_NS", "CONFIG_UNIX", "CONFIG_INET", "CONFIG_TUN",
    "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_RD_GZIP",
    "CONFIG_BINFMT_ELF", "CONFIG_BINFMT_SCRIPT", "CONFIG_SECCOMP", "CONFIG_PVH",
    "CONFIG_ACPI", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
]  # fmt: skip


def test_fragment_builds_in_what_the_guest_needs() -> None:
    opts = kernel.fragment_options()
    missing = [o for o in REQUIRED if opts.get(o) != "y"]
    assert not missing


def test_fragment_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "frag.config"
    bad.write_text("# ok\nCONFIG_A=y\nnot a line\n")
    with pytest.raises(RktError, match=r"frag.config:3"):
        kernel.fragment_options(bad)


def test_missing_options_names_what_olddefconfig_dropped() -> None:
    final = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_E=y\n"
    wanted = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "y", "CONFIG_D": "n",
              "CONFIG_E": "n"}  # fmt: skip
    assert kernel.missing_options(final, wanted) == ["CONFIG_B=y", "CONFIG_C=y", "CONFIG_E=n"]


def test_fragment_turns_off_the_slow_ps2_probe() -> None:
    opts = kernel.fragment_options()
    assert opts["CONFIG_SERIO_I8042"] == "n" and opts["CONFIG_INPUT_MOUSE"] == "n"


def test_cache_key_follows_the_fragment(tmp_path: Path) -> None:
    src = tmp_path / "linux.tar.xz"
    src.write_bytes(b"x")
    a, b = tmp_path / "a.config", tmp_path / "b.config"
    a.write_text("CONFIG_A=y\n")
    b.write_text("CONFIG_A=y\nCONFIG_B=y\n")
    assert kernel.cache_key(src, a) == kernel.cache_key(src, a)
    assert kernel.cache_key(src, a) != kernel.cache_key(src, b)


def test_cached_kernel_is_looked_up_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kernel.CACHE_ENV, str(tmp_path))
    if not kernel.SOURCE_TARBALL.exists():
        assert kernel.cached_tailored_kernel() is None
        return
    assert kernel.cached_tailored_kernel() is None  # empty cache: nothing, and no build
    d = tmp_path / kernel.cache_key()
    d.mkdir()
    (d / "bzImage").write_bytes(b"kernel")
    (d / "release").write_text("6.1.999\n")
    k = kernel.cached_tailored_kernel()
    assert k is not None and k.image == d / "bzImage" and k.release == "6.1.999"
    # ensure_* finds it too, without building
    assert kernel.ensure_tailored_kernel().image == d / "bzImage"


@pytest.mark.skipif(
    not list(Path("/lib/modules").glob("*/modules.dep")), reason="needs linux-image-amd64"
)
def test_distro_kernel_has_its_modules() -> None:
    k = kernel.distro_kernel()
    assert k.kind == "distro" and k.image.is_file()
    assert k.modules is not None and (k.modules / "modules.dep").exists()
    assert "cloud" not in k.release


def test_kernel_path_spec(tmp_path: Path) -> None:
    img = tmp_path / "bzImage"
    img.write_bytes(b"k")
    assert kernel.resolve_kernel(str(img)).image == img
    with pytest.raises(RktError, match="not found"):
        kernel.resolve_kernel(str(tmp_path / "nope"))
