"""`askgpt cache info|clear`: the on-disk caches, evaluated prompt prefixes
(runtime.engine.prefix_cache) and long documents' sentence vectors (runtime.retrieval.cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.options import FiguresJsonOpt
from askgpt.cli.state import state
from askgpt.cli.terminal.render import print_result
from askgpt.runtime.store.settings import Settings, vector_cache_folder

if TYPE_CHECKING:
    from askgpt.runtime.engine.prefix_cache import PrefixCacheConfig

app = Commands(help="The on-disk caches of evaluated prompt prefixes and of long documents' sentence "
                    "vectors: a second question about the same document starts at once.")


def _config(settings: Settings) -> PrefixCacheConfig:
    from askgpt.runtime.engine.prefix_cache import PrefixCacheConfig

    # Shown and cleared even when the config file turns the cache off.
    return PrefixCacheConfig(folder=settings.paths.cache_dir / "prefix",
                             max_bytes=settings.defaults.prefix_cache_mb * 2**20)


@app.command("info")
def cache_info(ctx: typer.Context, as_json: FiguresJsonOpt = False) -> None:
    """Where the caches are, their sizes and bounds, and the prompts the prefix cache holds."""
    from askgpt.runtime.engine.prefix_cache import summary
    from askgpt.runtime.retrieval.cache import MAX_BYTES, cache_bytes

    settings = state(ctx).settings
    found = summary(_config(settings))
    vectors = vector_cache_folder(settings)
    vector_bytes = cache_bytes(vectors)
    enabled = settings.defaults.prefix_cache
    data = {
        "folder": str(found.folder), "enabled": enabled,
        "entries": len(found.entries), "bytes": found.total_bytes, "max_bytes": found.max_bytes,
        "prompts": [{"file": e.path.name, "tokens": e.keys_count, "bytes": e.bytes, "last_used": e.last_used}
                    for e in reversed(found.entries)],
        "vectors": {"folder": str(vectors), "bytes": vector_bytes, "max_bytes": MAX_BYTES},
    }
    mib = 2**20
    lines = [f"prefix cache: {'on' if enabled else 'off (prefix_cache = false in the config file)'}",
             f"folder: {found.folder}",
             f"entries: {len(found.entries)}, {found.total_bytes / mib:,.1f} MiB of {found.max_bytes / mib:,.0f} MiB"]
    lines += [f"  {e.keys_count:>7,} tokens  {e.bytes / mib:8,.1f} MiB  {e.path.name}"
              for e in reversed(found.entries)]
    lines += [f"sentence vectors: {vector_bytes / mib:,.1f} MiB of {MAX_BYTES / mib:,.0f} MiB "
              f"(past it, the file starts afresh) in {vectors}"]
    print_result(data, "\n".join(lines), as_json=as_json)


@app.command("clear")
def cache_clear(ctx: typer.Context) -> None:
    """Delete every cached prefix and every cached sentence vector."""
    from askgpt.runtime.engine.prefix_cache import clear
    from askgpt.runtime.retrieval.cache import clear as clear_vectors

    settings = state(ctx).settings
    freed = clear(_config(settings).folder) + clear_vectors(vector_cache_folder(settings))
    typer.echo(f"freed {freed / 2**20:,.1f} MiB")
