"""Facts about this process that reports print."""

from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB (0.0 where the platform cannot say)."""
    # Linux: VmHWM is this program's own high-water mark. ru_maxrss also keeps the peak of
    # the image exec replaced, so a process started by a big parent would report the parent's.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


def physical_cores() -> int:
    """Physical CPU cores (llama.cpp runs best with one thread per core, not per
    hyper-thread). Linux: distinct (package, core) pairs in /proc/cpuinfo; elsewhere,
    or when that says nothing, os.cpu_count()."""
    import os

    cores: set[tuple[str, str]] = set()
    try:
        package = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                package = value.strip()
            elif key == "core id":
                core = value.strip()
            elif not line.strip() and core:
                cores.add((package, core))
                package = core = ""
        if core:
            cores.add((package, core))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get without swapping: Linux's MemAvailable (free
    plus reclaimable page cache); elsewhere the free pages; None when unknown."""
    import os

    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
