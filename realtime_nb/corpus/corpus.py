"""Many recordings as one dataset: ``Corpus("recordings/**/*.arrow")``.

Opening a corpus lists the files and nothing else. The first use of a summary table (sessions,
turns, items) reduces each recording once, without its audio (:mod:`._summary`), and caches the
rows keyed by the file's path, modification time and size (:mod:`._cache`), so re-opening a
folder of thousands of recordings only reduces the new ones. The events table is never copied:
:meth:`Corpus.events` streams it file by file from memory-mapped files, and :meth:`Corpus.sql`
gives DuckDB zero-copy views of the mapped files, into which it pushes its projection, so a query
touches the pages of the columns it reads (never the audio) and memory follows what the query
keeps, not the size of the corpus.
"""

from __future__ import annotations

import glob as _glob
import html
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from ..storage.recording import SCHEMA_FIELDS, Recording, RecordingFormatError
from . import _cache
from ._summary import (
    ITEMS_SCHEMA,
    SESSIONS_SCHEMA,
    TURNS_SCHEMA,
    Summary,
    read_light,
    summarize_or_error,
)

if TYPE_CHECKING:
    from .batch import RedriveReport
    from .checks import Check
    from .evaluate import Evaluation
    from .parquet import ExportReport

__all__ = ["EVENTS_SCHEMA", "Corpus", "CorpusWarning"]

JSON = dict[str, Any]

#: The events table: every event of every recording, keyed by ``recording``; ``audio_bytes`` is
#: the length of the event's audio (``null``: none), the bytes themselves only when asked for.
EVENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        *(f for f in SCHEMA_FIELDS if f.name != "audio"),
        pa.field("audio_bytes", pa.int32()),
    ]
)
EVENTS_WITH_AUDIO_SCHEMA: Final = EVENTS_SCHEMA.append(pa.field("audio", pa.binary()))
#: Table names :meth:`Corpus.sql` knows, with what each holds.
TABLES: Final = {
    "sessions": "one row per recording",
    "turns": "one row per user turn, with its answer and metrics",
    "items": "one row per conversation item",
    "events": "one row per event (no audio bytes)",
}
_GLOB_CHARS: Final = "*?["
#: Files to reduce at once below which the summaries are computed in this process: starting the
#: workers from a forkserver costs up to half a second (it imports realtime_nb), about what
#: reducing sixteen 5-minute recordings costs (a forked worker starts in milliseconds).
PARALLEL_MIN_FILES: Final = 16
#: Most worker processes for the summaries: past four, reading the files is the limit.
MAX_WORKERS: Final = 4
#: Environment variable forcing the workers' start method (``fork``, ``forkserver``, ``spawn``),
#: for measuring them or for a platform where the default choice misbehaves.
START_METHOD_ENV: Final = "REALTIME_NB_CORPUS_START_METHOD"


class CorpusWarning(UserWarning):
    """Some files of a corpus could not be read (:attr:`Corpus.unreadable` says which and why)."""


def _split_pattern(pattern: str) -> tuple[Path, str]:
    """``"recordings/**/*.arrow"`` -> (``recordings``, the pattern): the folder before the first
    wildcard is the corpus root, the base of every recording's key."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if any(c in part for c in _GLOB_CHARS):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    if len(fixed) == len(parts):  # no wildcard: a file or a folder
        root = root.parent if root.suffix else root
    return root, pattern


def _resolve_source(source: str | Path | Iterable[str | Path]) -> tuple[Path, list[Path]]:
    if isinstance(source, (str, Path)):
        text = str(source)
        if any(c in text for c in _GLOB_CHARS):
            root, pattern = _split_pattern(text)
            files = [Path(p) for p in _glob.glob(pattern, recursive=True)]
        elif Path(text).is_dir():
            root = Path(text)
            files = sorted(root.rglob("*.arrow"))
        elif Path(text).is_file():
            root, files = Path(text).parent, [Path(text)]
        else:
            raise FileNotFoundError(
                f"no recordings at {text!r}: give a glob pattern (recordings/**/*.arrow), a folder "
                "or a .arrow file"
            )
        return root, sorted(p for p in files if p.is_file())
    paths = [Path(p) for p in source]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no recording file at {', '.join(missing[:5])}")
    if not paths:
        return Path("."), []
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return root, sorted(paths)


def _key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _pool_context() -> Any:
    """How to start the summary workers.

    ``fork`` when this process runs no other Python thread: a worker starts in milliseconds
    with realtime_nb already imported, and the caller's script is not run again in it. Otherwise
    (a notebook's kernel threads, a live session) ``forkserver``, whose workers inherit no thread
    in whatever state it is: its server imports the summary module once (preloaded) and forks
    each worker from there. Where neither exists (Windows), ``spawn``.
    """
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if os.environ.get(START_METHOD_ENV) in methods:
        return multiprocessing.get_context(os.environ[START_METHOD_ENV])
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([Summary.__module__])
        return context
    return multiprocessing.get_context("spawn")


def _rows_table(rows: Sequence[JSON], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


class Corpus:
    """Recordings as one dataset: sessions, turns, items and events tables, SQL, export,
    batch re-drive and checks.

    Args:
        source: a glob pattern (``"recordings/**/*.arrow"``), a folder (every ``.arrow`` under
            it) or a list of files.
        cache: keep per-file summaries between opens (``False``: always reduce).
        cache_dir: where (default: :func:`realtime_nb.corpus._cache.default_cache_dir`).
        root: the folder the recordings' keys are relative to (default: the pattern's folder,
            or the files' common folder).
        workers: processes reducing new files (default: one per core, up to
            :data:`MAX_WORKERS`, when at least :data:`PARALLEL_MIN_FILES` files are new; 1:
            all in this process).

    Raises:
        FileNotFoundError: ``source`` names nothing that exists.
    """

    def __init__(
        self,
        source: str | Path | Iterable[str | Path] = "recordings/**/*.arrow",
        *,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        root: str | Path | None = None,
        workers: int | None = None,
    ) -> None:
        if isinstance(source, Corpus):
            raise TypeError("Corpus(...) takes a pattern, a folder or files, not a Corpus")
        self.root, self.paths = _resolve_source(source)
        if root is not None:  # the base of the keys, for a list of files
            self.root = Path(root)
        self.source = source if isinstance(source, (str, Path)) else None
        self.keys: list[str] = [_key(p, self.root) for p in self.paths]
        self._by_key = dict(zip(self.keys, self.paths, strict=True))
        self.cache = cache
        self.workers = workers
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else _cache.default_cache_dir(self.root)
        )
        #: Files that could not be read, with the reason (left out of every table).
        self.unreadable: dict[str, str] = {}
        self._tables: dict[str, pa.Table] | None = None
        #: What the batch re-drive that made this corpus did (``None``: not made by one).
        self.report: RedriveReport | None = None

    # -- the summary tables ----------------------------------------------------------------------

    def _summaries(self) -> dict[str, pa.Table]:
        if self._tables is not None:
            return self._tables
        cached = _cache.load(self.cache_dir) if self.cache else None
        stats = {}
        for key, path in self._by_key.items():
            st = path.stat()
            stats[key] = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        valid: set[str] = set()
        if cached is not None:
            s = cached["sessions"]
            for key, p, mt, size in zip(
                s.column("recording").to_pylist(),
                s.column("path").to_pylist(),
                s.column("mtime_ns").to_pylist(),
                s.column("size_bytes").to_pylist(),
                strict=True,
            ):
                if stats.get(key) == (p, mt, size):
                    valid.add(key)
        todo = [k for k in self.keys if k not in valid]
        fresh: list[Summary] = []
        for key, out in zip(todo, self._summarize_all(todo), strict=True):
            if isinstance(out, Summary):
                fresh.append(out)
            else:
                self.unreadable[key] = out
        if self.unreadable:
            some = ", ".join(list(self.unreadable)[:3])
            warnings.warn(
                CorpusWarning(
                    f"{len(self.unreadable)} file(s) of the corpus could not be read and are left "
                    f"out ({some}{', ...' if len(self.unreadable) > 3 else ''}); see "
                    "Corpus.unreadable"
                ),
                stacklevel=3,
            )
        new = {
            "sessions": _rows_table([f.session for f in fresh], SESSIONS_SCHEMA),
            "turns": _rows_table([r for f in fresh for r in f.turns], TURNS_SCHEMA),
            "items": _rows_table([r for f in fresh for r in f.items], ITEMS_SCHEMA),
        }
        tables = {}
        for name, table in new.items():
            if cached is not None and valid:
                table = pa.concat_tables([_cache.keep_rows(cached[name], valid), table])
            order = [("recording", "ascending")]
            if name == "turns":
                order.append(("turn", "ascending"))
            elif name == "items":
                order.append(("position", "ascending"))
            tables[name] = table.sort_by(order)
        stale = cached is not None and cached["sessions"].num_rows != len(valid)
        if self.cache and (fresh or stale or cached is None):
            try:
                _cache.save(self.cache_dir, tables)
            except OSError as exc:  # a read-only home: work without a cache, say so once
                warnings.warn(
                    CorpusWarning(f"the corpus cache could not be written: {exc}"), stacklevel=3
                )
        self._tables = tables
        return tables

    def _summarize_all(self, keys: Sequence[str]) -> list[Summary | str]:
        """Each file's summary (or why it could not be read), on every core when there are
        enough files to repay starting the workers."""
        jobs = [(self._by_key[k], k) for k in keys]
        if self.workers is not None:  # asked for: as many as said, whatever the number of files
            workers = self.workers if len(jobs) > 1 else 1
        else:
            enough = len(jobs) >= PARALLEL_MIN_FILES
            workers = min(os.cpu_count() or 1, MAX_WORKERS) if enough else 1
        if workers < 2:
            return [summarize_or_error(p, k) for p, k in jobs]
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            paths, names = zip(*jobs, strict=True)
            chunk = max(1, len(jobs) // (workers * 4))
            return list(pool.map(summarize_or_error, paths, names, chunksize=chunk))

    @property
    def sessions(self) -> pa.Table:
        """One row per recording: model, duration, turns, tokens, cost, errors, parent, ..."""
        return self._summaries()["sessions"]

    @property
    def turns(self) -> pa.Table:
        """One row per user turn: latency, user and assistant text, tool calls, tokens, cost."""
        return self._summaries()["turns"]

    @property
    def items(self) -> pa.Table:
        """One row per conversation item: messages, tool calls and outputs, in order."""
        return self._summaries()["items"]

    def refresh(self) -> Corpus:
        """A new corpus over the same source (new files included)."""
        if self.source is None:
            return Corpus(self.paths, cache=self.cache, cache_dir=self.cache_dir)
        return Corpus(self.source, cache=self.cache, cache_dir=self.cache_dir)

    # -- events ----------------------------------------------------------------------------------

    def events(
        self, *, audio: bool = False, recordings: Iterable[str] | None = None
    ) -> pa.RecordBatchReader:
        """Every event of every recording (or of ``recordings``, by key) as a stream of record
        batches, one file at a time; ``audio=True`` adds the audio bytes. A stream is read once.

        Raises:
            KeyError: a key in ``recordings`` that is not in the corpus.
        """
        keys = self.keys if recordings is None else list(recordings)
        unknown = [k for k in keys if k not in self._by_key]
        if unknown:
            raise KeyError(f"not in this corpus: {', '.join(unknown[:5])}")
        schema = EVENTS_WITH_AUDIO_SCHEMA if audio else EVENTS_SCHEMA
        return pa.RecordBatchReader.from_batches(schema, self._event_batches(keys, audio))

    def _event_batches(self, keys: Sequence[str], audio: bool) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        schema = EVENTS_WITH_AUDIO_SCHEMA if audio else EVENTS_SCHEMA
        for key in keys:
            if key in self.unreadable:
                continue
            try:
                _meta, table, _whole = read_light(self._by_key[key])
            except (RecordingFormatError, OSError, pa.ArrowException) as exc:
                self.unreadable[key] = str(exc)
                continue
            for batch in table.to_batches():
                n = batch.num_rows
                if not n:
                    continue
                sound = batch.column(8)
                cols = [
                    pa.repeat(pa.scalar(key, pa.string()), n),
                    *(batch.column(i) for i in range(8)),
                    pc.cast(pc.binary_length(sound), pa.int32()),
                ]
                if audio:
                    cols.append(sound)
                yield pa.RecordBatch.from_arrays(cols, schema=schema)

    def _events_dataset(self) -> Any:
        """The events of every file as one in-memory pyarrow dataset of zero-copy views of the
        memory-mapped files: DuckDB pushes its projection and filters into it, so a query
        touches only the pages of the columns it reads (never the audio), in parallel. Only the
        ``recording`` and ``audio_bytes`` columns are built in memory: a few bytes per event."""
        import pyarrow.dataset as ds

        batches = list(self._event_batches(self.keys, audio=False))
        return ds.dataset(batches, schema=EVENTS_SCHEMA)

    # -- queries ---------------------------------------------------------------------------------

    def table(self, name: str) -> pa.Table:
        """A table by name (``events`` is read whole: prefer :meth:`sql` or :meth:`events`).

        Raises:
            ValueError: an unknown table name (the message lists the known ones).
        """
        if name == "events":
            return self.events().read_all()
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; the corpus has {', '.join(TABLES)}")
        return self._summaries()[name]

    def sql(self, query: str) -> pa.Table:
        """Run a DuckDB query over ``sessions``, ``turns``, ``items`` and ``events``; returns an
        Arrow table (``.to_pandas()``, ``polars.from_arrow``). The events are the memory-mapped
        files themselves: the query reads the columns it names, never the audio.

        Raises:
            MissingExtraError-like ImportError: DuckDB is not installed (``pip install
                'realtime-nb[corpus]'``).
            duckdb.Error: the query is invalid (DuckDB's message).
        """
        import re

        try:
            import duckdb
        except ImportError:  # pragma: no cover - the [corpus] extra brings it
            raise ImportError(
                "Corpus.sql needs DuckDB: pip install 'realtime-nb[corpus]' (or pip install duckdb)"
            ) from None
        con = duckdb.connect()
        try:
            for name in ("sessions", "turns", "items"):
                if re.search(rf"\b{name}\b", query, re.IGNORECASE):
                    con.register(name, self._summaries()[name])
            if re.search(r"\bevents\b", query, re.IGNORECASE):
                con.register("events", self._events_dataset())
            rel = con.sql(query)
            if rel is None:
                return pa.table({})
            fetch: Callable[[], Any] = getattr(rel, "to_arrow_table", None) or rel.arrow
            result = fetch()
            return result if isinstance(result, pa.Table) else result.read_all()
        finally:
            con.close()

    def to_polars(self, name: str = "sessions") -> Any:
        """A table as a polars DataFrame (``events`` is read whole)."""
        import polars as pl

        return pl.from_arrow(self.table(name))

    def to_pandas(self, name: str = "sessions") -> Any:
        """A table as a pandas DataFrame (``events`` is read whole)."""
        return self.table(name).to_pandas()

    # -- recordings ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def path(self, key: str) -> Path:
        """The file of the recording ``key``.

        Raises:
            KeyError: not in this corpus.
        """
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"{key!r} is not in this corpus ({len(self)} recordings)") from None

    def recording(self, key: str) -> Recording:
        """Open the recording ``key`` (its audio included)."""
        return Recording.open(self.path(key))

    def parents(self) -> dict[str, str | None]:
        """Each recording's parent's resolved path (``None``: not a re-drive)."""
        s = self.sessions
        out: dict[str, str | None] = {}
        for key, parent in zip(
            s.column("recording").to_pylist(), s.column("parent").to_pylist(), strict=True
        ):
            out[key] = str(Path(parent).resolve()) if parent else None
        return out

    # -- the wider features (their own modules) --------------------------------------------------

    def to_parquet(self, directory: str | Path, *, audio: bool = False) -> ExportReport:
        """Export to zstd Parquet, partitioned by day, incrementally (see
        :func:`realtime_nb.corpus.parquet.export`)."""
        from .parquet import export

        return export(self, directory, audio=audio)

    def redrive(self, *, record: str | Path | None = None, **settings: Any) -> Corpus:
        """Re-drive every recording with changed settings; returns the children's corpus (its
        :attr:`report` says what was done, skipped and failed). See
        :func:`realtime_nb.corpus.batch.redrive_corpus`."""
        from .batch import redrive_corpus

        return redrive_corpus(self, record=record, **settings)

    def evaluate(
        self,
        checks: Check | Sequence[Check] | Mapping[str, Check],
        *,
        against: Corpus | None = None,
    ) -> Evaluation:
        """Run ``checks`` over every turn, compared with ``against`` (the parents' corpus); see
        :func:`realtime_nb.corpus.evaluate.evaluate`."""
        from .evaluate import evaluate

        return evaluate(self, checks, against=against)

    def __repr__(self) -> str:
        return f"<Corpus {self.root}: {len(self)} recordings>"

    def _repr_html_(self) -> str:
        s = self.sessions
        dur = sum(v or 0.0 for v in s.column("duration_s").to_pylist())
        return (
            "<div class='tex2jax_ignore mathjax_ignore' style='text-align:left'>"
            f"<b>Corpus</b> {html.escape(str(self.root))}: {len(self)} recordings, "
            f"{self.turns.num_rows} turns, {dur / 60:.1f} minutes</div>"
        )
