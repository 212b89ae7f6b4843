"""`askgpt cache info|clear`: the on-disk prefix cache (runtime.engine.prefix_cache)."""

from __future__ import annotations

from askgpt.cli.render import print_result
from askgpt.runtime.engine.prefix_cache import PrefixCacheConfig, clear, summary
from askgpt.runtime.store.settings import Settings


def _config(settings: Settings) -> PrefixCacheConfig:
    # Shown and cleared even when the config file turns the cache off.
    return PrefixCacheConfig(folder=settings.paths.cache_dir / "prefix",
                             max_bytes=settings.defaults.prefix_cache_mb * 2**20)


def run_info(settings: Settings, *, as_json: bool) -> None:
    found = summary(_config(settings))
    state = "on" if settings.defaults.prefix_cache else "off (prefix_cache = false in the config file)"
    data = {
        "folder": str(found.folder), "enabled": settings.defaults.prefix_cache,
        "entries": len(found.entries), "bytes": found.total_bytes, "max_bytes": found.max_bytes,
        "prompts": [{"file": e.path.name, "tokens": e.keys_count, "bytes": e.bytes, "last_used": e.last_used}
                    for e in reversed(found.entries)],
    }
    mib = 2**20
    lines = [f"prefix cache: {state}", f"folder: {found.folder}",
             f"entries: {len(found.entries)}, {found.total_bytes / mib:,.1f} MiB of {found.max_bytes / mib:,.0f} MiB"]
    lines += [f"  {e.keys_count:>7,} tokens  {e.bytes / mib:8,.1f} MiB  {e.path.name}"
              for e in reversed(found.entries)]
    print_result(data, "\n".join(lines), as_json=as_json)


def run_clear(settings: Settings) -> str:
    freed = clear(_config(settings).folder)
    return f"freed {freed / 2**20:,.1f} MiB"
