"""A replica's process keeps the boot time it saw at start: xoscar stops a sub pool whose
worker's creation time (boot time + ticks, in wall-clock seconds) changes, and the boot
time moves whenever the wall clock is stepped; a 1.5 s step of this machine's clock
stopped every replica before (see ModelActor.hold_boot_time)."""

import pytest

from xinference.core.model_actor import hold_boot_time


def test_the_boot_time_holds_when_the_kernel_s_moves(tmp_path, monkeypatch):
    psutil = pytest.importorskip("psutil")
    platform = getattr(psutil, "_pslinux", None)
    if platform is None:
        pytest.skip("Linux only")
    monkeypatch.setattr(platform, "boot_time", platform.boot_time)  # undone after the test
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nbtime 1796320422\n")
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    assert platform.boot_time() == 1796320422.0
    hold_boot_time()
    stat.write_text("cpu  1 2 3 4\nbtime 1796320423\n")  # the wall clock was stepped
    assert platform.boot_time() == 1796320422.0
