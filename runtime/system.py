"""Facts about this process that reports print."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB (0.0 where the platform cannot say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
