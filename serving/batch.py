"""Offline scoring of a CSV or Parquet file with ``NAME@champion`` (``ledgerline score``), in chunks.

The file is read in chunks of ``chunk_rows`` rows (pyarrow's streaming CSV reader, or
``ParquetFile.iter_batches``); each chunk is validated against the model's request schema
column by column, scored by the family's :meth:`~serving.family.ServingFamily.score_frame`
and written out at once (CSV or Parquet, by the output's extension), so memory stays bounded
by the chunk size, whatever the file size.

* **Columns.** Every request column must be in the file (a nullable one may be missing: it is
  null); any other column (an id, a true label, ...) passes through untouched: its values are
  written as read (CSV is read as text, so ``007`` stays ``007``). The answer columns follow.
* **Bad rows.** A row with a bad value is not scored: it goes, with its 1-based row number and
  the reason, to ``<output>.errors.csv``. The run fails (exit 2, no output file) when more
  than ``max_error_share`` of the rows (default 1 %) are rejected; the errors file is kept so
  the rows can be fixed. Without rejected rows there is no errors file.
* **Nothing half-written.** Output and errors file are written to temporary files next to
  them and renamed at the end; a failed or interrupted run leaves neither behind.
* **Families with history** (``stateful``, e.g. anomaly detection: each row's features
  depend on its customer's earlier rows, which in an unsorted file can be anywhere) are
  scored point in time over the whole file: a first pass reads only the request columns of
  every chunk, validates them and scores them in one ``score_frame`` call; the second pass
  streams the whole rows again and attaches the answers. Memory then grows with rows x
  request columns (about 1 GB per 5 million transactions), not with the passthrough columns.
  The online profile store is never touched.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ledgerline.settings import Settings
    from serving.family import ServingContext, ServingFamily
    from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_MAX_ERROR_SHARE = 0.01
PROGRESS_EVERY_S = 5.0
FORMATS = (".csv", ".parquet")
ROW_COLUMN = "row"
ERROR_COLUMN = "error"

Progress = Callable[[str], None]


class ScoringError(LedgerlineError):
    """The file cannot be scored as given (bad path, columns, too many bad rows, unknown model)."""


@dataclass
class LoadedChampion:
    family: ServingFamily[Any]
    model: object
    ctx: ServingContext
    workdir: Path  # the downloaded model; removed by close()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class ScoreReport:
    rows: int = 0  # data rows read
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    output: Path | None = None
    errors_file: Path | None = None
    first_errors: list[str] = field(default_factory=list)


def offline_settings() -> ServingSettings:
    """The serving settings that shape answers (thresholds, reason codes) from the environment.

    Offline scoring takes no requests, so the API's keys are not needed: throw-away ones fill them.
    """
    import secrets

    from pydantic import ValidationError

    from serving.settings import ServingSettings

    try:
        return ServingSettings(api_keys=[secrets.token_urlsafe(24)], admin_key=secrets.token_urlsafe(24))  # type: ignore[call-arg]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ScoringError(f"serving setting {where} is invalid: {first['msg']} (see LEDGERLINE_SERVING_* in README Settings)") from None


# --- loading ------------------------------------------------------------------------------------


def load_champion(platform: Settings, settings: ServingSettings, name: str, version: str | None = None) -> LoadedChampion:
    """``name@champion`` (or version ``version``) downloaded and loaded by its family (no predictor, no profile store).

    Loaded by the same loader as online serving (:func:`serving.loader.fetch_version`); the
    download lives in a temporary folder until :meth:`LoadedChampion.close`.
    """
    import shutil

    from serving import loader
    from serving.errors import ModelLoadError, RegistryUnavailable
    from serving.family import ServingContext

    try:
        loader.probe_tracking_server(platform.tracking_uri, timeout=10)
        client = loader.mlflow_client(platform)
        ref = loader.champion_ref(client, name) if version is None else loader.version_ref(client, name, version)
    except RegistryUnavailable as exc:
        problem = str(exc).removesuffix("; serving the loaded versions")
        raise ScoringError(f"{problem}; start it (make demo) or set MLFLOW_TRACKING_URI") from exc
    if ref is None and version is not None:
        raise ScoringError(f"model {name} has no version {version} (deleted since?)")
    if ref is None:
        raise ScoringError(f"model {name} has no @champion (or does not exist); train it first: ledgerline train FAMILY "
                           f"--model-name {name}")
    tmp = Path(tempfile.mkdtemp(prefix="ledgerline-score-"))
    try:
        fetched = loader.fetch_version(platform, client, ref, tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ModelLoadError):
            raise ScoringError(str(exc)) from exc
        raise
    ctx = ServingContext(name, ref.version, settings, fetched.spec, fetched.columns, fetched.local, options={"cache": {}})
    return LoadedChampion(fetched.family, fetched.model, ctx, tmp)


# --- reading ------------------------------------------------------------------------------------


def check_paths(input_path: str | Path, output_path: str | Path) -> tuple[Path, Path]:
    """The cheap checks, before any server is asked."""
    src, dst = Path(input_path), Path(output_path)
    if not src.exists():
        raise ScoringError(f"input file {src} does not exist; check the path passed to --input")
    if src.is_dir():
        raise ScoringError(f"{src} is a folder; pass a .csv or .parquet file to --input")
    if src.suffix.lower() not in FORMATS:
        raise ScoringError(f"cannot read {src}: unsupported file type '{src.suffix}'; use .csv or .parquet")
    if dst.suffix.lower() not in FORMATS:
        raise ScoringError(f"cannot write {dst}: unsupported file type '{dst.suffix}'; use .csv or .parquet")
    if dst.is_dir():
        raise ScoringError(f"--output {dst} is a folder; pass a file name ending in .csv or .parquet")
    if not dst.parent.is_dir():
        raise ScoringError(f"the folder of --output {dst} does not exist; create it first")
    if dst.resolve() == src.resolve():
        raise ScoringError("--output is the input file; write the scores to another file")
    return src, dst


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise ScoringError(f"{path} is empty; it needs a header line and rows") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ScoringError(f"cannot read the header of {path}: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ScoringError(f"{path} has duplicate column names {dupes}; rename them")
    return header


def _count_csv_rows(path: Path) -> int:
    """Lines after the header (an estimate when quoted values hold line breaks)."""
    n = 0
    last = b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    return max(0, n + (last != b"\n") - 1)


@dataclass
class Source:
    path: Path
    names: list[str]
    total_rows: int
    schema: pa.Schema

    def batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        try:
            if self.path.suffix.lower() == ".parquet":
                yield from pq.ParquetFile(self.path).iter_batches(batch_size=chunk_rows, columns=columns)
                return
            wanted = list(columns) if columns is not None else self.names
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=1 << 22, encoding="utf8"),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in self.names},
                    include_columns=wanted,
                    null_values=[""],  # only an empty cell is null: "NA" may be Namibia, "n/a" is junk to report
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            yield from _exact_chunks(iter(reader), chunk_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoringError(f"cannot read {self.path}: {str(exc).splitlines()[0]}") from None


def open_source(path: Path) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoringError(f"cannot read {path} as Parquet: {exc}") from None
        schema = pf.schema_arrow
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested:
            raise ScoringError(f"{path} has nested columns {nested}; flatten them to plain columns")
        return Source(path, list(schema.names), int(pf.metadata.num_rows), schema)
    names = _csv_header(path)
    return Source(path, names, _count_csv_rows(path), pa.schema([(n, pa.string()) for n in names]))


# --- writing ------------------------------------------------------------------------------------


class _Writer:
    """Arrow batches to a temporary CSV or Parquet file, renamed into place by :meth:`commit`."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self._w: Any = None
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self.schema is None:
            self.schema = table.schema
            if self.dst.suffix.lower() == ".parquet":
                self._w = pq.ParquetWriter(self.tmp, table.schema)
            else:
                self._w = self.tmp.open("w", newline="", encoding="utf-8")
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        if isinstance(self._w, pq.ParquetWriter):
            self._w.write_table(table)
        else:
            # pandas quotes only what needs quoting (pyarrow's writer quotes every text value), so an input
            # CSV's lines come back as they were, followed by the answers; booleans as true/false
            frame = table.to_pandas()
            for name, col in frame.items():
                if col.dtype == bool:
                    frame[name] = col.map({True: "true", False: "false"})
            frame.to_csv(self._w, header=self._w.tell() == 0, index=False, lineterminator="\n")

    def commit(self) -> None:
        if self._w is not None:
            self._w.close()
        self.tmp.replace(self.dst)

    def abort(self) -> None:
        if self._w is not None:
            try:
                self._w.close()
            except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)


class _ErrorsFile:
    def __init__(self, dst: Path, names: Sequence[str]) -> None:
        self.dst = dst
        self.names = list(names)
        self.tmp: Path | None = None
        self._f: Any = None
        self._w: Any = None

    def write(self, rows: Sequence[int], reasons: Sequence[str], frame: pd.DataFrame) -> None:
        if self._f is None:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.dst.name}.", suffix=".part", dir=self.dst.parent)
            self.tmp = Path(tmp)
            self._f = os.fdopen(fd, "w", newline="", encoding="utf-8")
            self._w = csv.writer(self._f)
            self._w.writerow([ROW_COLUMN, ERROR_COLUMN, *self.names])
        values = frame.astype(object).where(frame.notna(), "").to_numpy().tolist()
        for r, why, vals in zip(rows, reasons, values, strict=True):
            self._w.writerow([r, why, *vals])

    def commit(self) -> bool:
        if self._f is None:
            self.dst.unlink(missing_ok=True)  # an earlier run's errors are not this file's
            return False
        self._f.close()
        assert self.tmp is not None
        self.tmp.replace(self.dst)
        return True

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            assert self.tmp is not None
            self.tmp.unlink(missing_ok=True)


def errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.csv")


# --- the engine ---------------------------------------------------------------------------------


def _answer_table(answers: pd.DataFrame, names: Sequence[str]) -> pa.Table:
    import pyarrow as pa

    arrays = []
    for n in names:
        s = answers[n]
        arrays.append(pa.array(s.astype(object).where(s.notna(), None).tolist()))
    return pa.table(dict(zip(names, arrays, strict=True)))


@dataclass
class ScoredChunk:
    """One chunk of a file, scored: what ``ledgerline score`` writes and a batch job commits."""

    index: int  # 0-based chunk number (chunk i holds rows i*chunk_rows+1 ...)
    first_row: int  # 1-based number of its first data row
    rows: int  # data rows read
    table: pa.Table | None  # the scored rows as read, plus the answer columns (None: every row rejected)
    clean: pd.DataFrame  # the scored rows' request columns, validated (what the prediction log keeps)
    answers: pd.DataFrame  # their answer columns, same index (0-based row positions in the file)
    rejected_rows: list[int]  # 1-based row numbers
    reasons: list[str]
    rejected: pd.DataFrame  # the rejected rows as read


def check_columns(loaded: LoadedChampion, src: Source) -> list[str]:
    """The request columns present in ``src``; ScoringError when a needed one is missing or an answer column clashes."""
    family, ctx = loaded.family, loaded.ctx
    request_names = [c.name for c in ctx.columns]
    from serving.schema import missing_columns

    missing = missing_columns(src.names, ctx.columns)
    if missing:
        raise ScoringError(
            f"{src.path} lacks the column(s) {', '.join(missing)} that {ctx.model_name} v{ctx.version} needs; "
            f"its inputs are: {', '.join(request_names)} (other columns pass through)"
        )
    clash = [n for n in family.answer_columns if n in src.names]
    if clash:
        raise ScoringError(f"{src.path} already has the answer column(s) {', '.join(clash)}; "
                           "drop or rename them before scoring")
    return [n for n in request_names if n in src.names]


def _exact_chunks(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` re-cut into chunks of exactly ``chunk_rows`` rows (the last one may be shorter), so chunk
    ``i`` always holds the same rows (a resumed batch job relies on it)."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == chunk_rows and not pending:
            yield batch
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield from table.slice(0, chunk_rows).to_batches(max_chunksize=chunk_rows)
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield from pa.Table.from_batches(pending).combine_chunks().to_batches(max_chunksize=chunk_rows)


def scored_chunks(
    loaded: LoadedChampion,
    src: Source,
    chunk_rows: int,
    *,
    start_chunk: int = 0,
    progress: Callable[[int, str], None] | None = None,
) -> Iterator[ScoredChunk]:
    """The chunked engine: chunk after chunk of ``src`` validated and scored, from chunk ``start_chunk`` on.

    Chunks before ``start_chunk`` are read but neither validated nor scored (a resumed batch job).
    A ``stateful`` family scores the whole file's request columns first (module docstring).
    ``progress(rows, stage)`` is called after each chunk read in that first pass.
    """
    import pandas as pd
    import pyarrow as pa

    from serving.schema import validate_frame

    if chunk_rows < 1:
        raise ScoringError(f"the chunk size must be at least 1 row, not {chunk_rows}")
    family, ctx = loaded.family, loaded.ctx
    columns = list(ctx.columns)
    request_names = [c.name for c in columns]
    present = check_columns(loaded, src)
    whole: pd.DataFrame | None = None
    if family.stateful:  # pass 1: the request columns of the whole file, scored at once (module docstring)
        parts: list[pd.DataFrame] = []
        offset = 0
        for batch in _exact_chunks(src.batches(chunk_rows, present), chunk_rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            clean, _ = validate_frame(frame, columns, ctx.spec)
            parts.append(clean)
            if progress is not None:
                progress(offset, "read")
        clean_all = pd.concat(parts) if parts else pd.DataFrame(columns=request_names)
        whole = family.score_frame(loaded.model, clean_all, ctx) if len(clean_all) else clean_all.iloc[:, :0]
    offset = 0
    for index, batch in enumerate(_exact_chunks(src.batches(chunk_rows), chunk_rows)):
        first = offset
        offset += batch.num_rows
        if index < start_chunk:
            continue
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(first, offset)
        clean, reasons = validate_frame(frame[present], columns, ctx.spec)
        table = None
        answers = clean.iloc[:, :0]
        if len(clean):
            answers = whole.loc[clean.index] if whole is not None else family.score_frame(loaded.model, clean, ctx)
            table = pa.Table.from_batches([batch])
            if len(reasons):
                table = table.filter(pa.array(~frame.index.isin(reasons.index)))
            for name, arr in zip(family.answer_columns, _answer_table(answers, family.answer_columns).columns, strict=True):
                table = table.append_column(name, arr)
        yield ScoredChunk(
            index=index, first_row=first + 1, rows=len(frame), table=table, clean=clean, answers=answers,
            rejected_rows=[int(i) + 1 for i in reasons.index], reasons=[str(r) for r in reasons.tolist()],
            rejected=frame.loc[reasons.index],
        )


def score_file(
    loaded: LoadedChampion,
    input_path: Path,
    output_path: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
    progress: Progress | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> ScoreReport:
    """Score ``input_path`` into ``output_path`` (see the module docstring). Raises ScoringError."""
    if chunk_rows < 1:
        raise ScoringError(f"the chunk size must be at least 1 row, not {chunk_rows}")
    if not 0.0 <= max_error_share <= 1.0:
        raise ScoringError(f"the allowed share of bad rows must be between 0 and 1, not {max_error_share}")
    src = open_source(input_path)
    check_columns(loaded, src)
    report = ScoreReport()
    t0 = time.perf_counter()
    last = t0
    total = src.total_rows

    def tick(done: int, stage: str = "scored") -> None:
        nonlocal last
        now = time.perf_counter()
        if progress is not None and now - last >= progress_every_s:
            last = now
            rate = done / max(now - t0, 1e-9)
            progress(f"{stage} {done:,} / {total:,} rows ({rate:,.0f} rows/s)")

    writer = _Writer(output_path)
    errors = _ErrorsFile(errors_path(output_path), src.names)
    first_pass_done = False
    try:
        for chunk in scored_chunks(loaded, src, chunk_rows, progress=tick):
            if loaded.family.stateful and not first_pass_done and progress is not None:
                progress(f"read {total:,} rows; scored them with each customer's earlier rows (one pass in time order)")
            first_pass_done = True
            report.rows += chunk.rows
            if chunk.rejected_rows:
                errors.write(chunk.rejected_rows, chunk.reasons, chunk.rejected)
                report.rejected += len(chunk.rejected_rows)
                report.first_errors += [f"row {r}: {why}" for r, why in zip(chunk.rejected_rows[:3], chunk.reasons[:3],
                                                                            strict=True)][: 3 - len(report.first_errors)]
            if chunk.table is not None:
                writer.write(chunk.table)
                report.scored += chunk.table.num_rows
            tick(chunk.first_row + chunk.rows - 1)
        if report.rows == 0:
            raise ScoringError(f"{input_path} has no rows to score")
        share = report.rejected / report.rows
        if report.rejected and share > max_error_share:
            kept = errors.commit()
            where = f"; every rejected row and its reason: {errors.dst}" if kept else ""
            raise ScoringError(
                f"{report.rejected:,} of {report.rows:,} rows ({share:.1%}) were rejected, more than the allowed "
                f"{max_error_share:.1%} (--max-error-share); nothing was written to {output_path}. "
                f"First: {'; '.join(report.first_errors)}{where}"
            )
        if report.scored == 0 and writer.schema is None:  # pragma: no cover - every row rejected within the share
            raise ScoringError(f"no row of {input_path} could be scored")
        writer.commit()
        report.errors_file = errors.dst if errors.commit() else None
    except BaseException:
        writer.abort()
        errors.abort()
        raise
    report.output = output_path
    report.seconds = time.perf_counter() - t0
    return report
