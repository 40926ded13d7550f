"""What the benchmarks share about the machine: its CPU, its CPU time, and reading a file.

Imported by the scripts beside it (``python bench/X.py`` puts this folder on the path).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"  # git-ignored
BLOCK = 1 << 20  # read size of every pass below


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all processes, all cores), steal included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and its waited-for children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def read_pass(path: Path) -> None:
    """Read the whole file once, so that the runs after read it from the page cache."""
    buffer = bytearray(BLOCK)
    with open(path, "rb", buffering=0) as raw:
        while raw.readinto(buffer):
            pass


def hash_file(path: Path, algorithm: str) -> str:
    """One hashlib digest of the file on this thread: the single-thread baseline."""
    digest = hashlib.new(algorithm)
    buffer = memoryview(bytearray(BLOCK))
    with open(path, "rb", buffering=0) as raw:
        while count := raw.readinto(buffer):
            digest.update(buffer[:count])
    return digest.hexdigest()


def random_file(kind: str, size: int) -> Path:
    """``bench/data/KIND-SIZE.img``: ``size`` random bytes, made once and then reused."""
    path = DATA / f"{kind}-{size}.img"
    if path.exists() and path.stat().st_size == size:
        return path
    DATA.mkdir(exist_ok=True)
    block = bytearray(os.urandom(64 << 20))
    with open(path.with_suffix(".tmp"), "wb") as out:
        for index in range(size // len(block)):
            block[:8] = index.to_bytes(8, "little")  # no two blocks alike
            out.write(block)
        out.write(os.urandom(size % len(block)))
    path.with_suffix(".tmp").rename(path)
    return path
