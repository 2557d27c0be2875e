"""The per-file summary cache: a corpus's sessions, turns and items rows, keyed by each file's
resolved path, modification time and size, so re-opening thousands of recordings reduces only
the new or changed ones.

One folder per corpus root holds three Parquet files (sessions, turns, items) plus a version
file; they are replaced atomically (written aside, then renamed) so a killed process leaves the
previous cache, never half of one. A cache written by another summary version is ignored.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._summary import ITEMS_SCHEMA, SESSIONS_SCHEMA, SUMMARY_VERSION, TURNS_SCHEMA

#: Environment variable naming the folder under which corpus caches live.
CACHE_ENV: Final = "REALTIME_NB_CACHE_DIR"
_TABLES: Final = {"sessions": SESSIONS_SCHEMA, "turns": TURNS_SCHEMA, "items": ITEMS_SCHEMA}


def default_cache_dir(root: Path) -> Path:
    """``$REALTIME_NB_CACHE_DIR`` (else ``$XDG_CACHE_HOME/realtime_nb`` or ``~/.cache/...``)
    ``/corpus/<hash of the corpus root>``: out of the user's recordings folder."""
    base = os.environ.get(CACHE_ENV)
    if base:
        top = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        top = (Path(xdg) if xdg else Path.home() / ".cache") / "realtime_nb"
    digest = hashlib.sha256(str(root.resolve()).encode("utf-8")).hexdigest()[:16]
    return top / "corpus" / digest


def load(folder: Path) -> dict[str, pa.Table] | None:
    """The cached tables, or ``None`` when there is no usable cache (absent, other version,
    unreadable: a cache is only ever an optimisation)."""
    try:
        if (folder / "version").read_text(encoding="utf-8").strip() != str(SUMMARY_VERSION):
            return None
        out = {}
        for name, schema in _TABLES.items():
            table = pq.read_table(folder / f"{name}.parquet")
            if not table.schema.equals(schema):
                return None
            out[name] = table
        return out
    except (OSError, pa.ArrowException):
        return None


def save(folder: Path, tables: dict[str, pa.Table]) -> None:
    """Replace the cache with ``tables`` (each file written aside, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in _TABLES:
        tmp = folder / f".{name}.parquet.tmp"
        # Uncompressed: the cache is read on every open and must be as fast as possible.
        pq.write_table(tables[name], tmp, compression="none")
        os.replace(tmp, folder / f"{name}.parquet")
    (folder / "version").write_text(str(SUMMARY_VERSION), encoding="utf-8")


def keep_rows(table: pa.Table, keys: set[str]) -> pa.Table:
    """The rows of ``table`` whose ``recording`` is in ``keys``."""
    if not keys:
        return table.slice(0, 0)
    return table.filter(pc.is_in(table.column("recording"), pa.array(sorted(keys), pa.string())))
