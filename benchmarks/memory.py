"""Figure 5: the memory of gunicorn's workers, read from /proc (Linux).

``benchmarks.server`` yields only the base URL; the workers are found from it: the
gunicorn processes whose command line binds that address, minus the master (the one whose
parent is not among them).
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def gunicorn_workers(base_url: str) -> list[int]:
    """Process ids of the gunicorn workers serving ``base_url`` (``http://host:port``)."""
    bind = base_url.removeprefix("http://")
    candidates = {
        int(entry.name)
        for entry in PROC.iterdir()
        if entry.name.isdigit()
        and "gunicorn" in (line := _command_line(int(entry.name)))
        and f"--bind {bind} " in line + " "
    }
    return sorted(pid for pid in candidates if _parent(pid) in candidates)


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid``: the most resident memory it has had (KiB)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")
