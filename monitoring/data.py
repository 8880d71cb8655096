"""What the monitoring jobs read: the champion and its training snapshot (from MLflow lineage),
the prediction log window and the labelled predictions (from the app database).

The prediction log is read with one ``COPY (SELECT ... FROM json_to_record(inputs) ...) TO STDOUT``
on Postgres (the JSON is unpacked by the server, the CSV parsed by pandas' C reader),
and with a plain SQLAlchemy select elsewhere (SQLite, the demo).
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from features.labels import OutcomeCodec
from features.spec import DatasetSpec
from ledgerline import db
from ledgerline.errors import DataError, RegistryError
from ledgerline.families import FAMILY_TAG, family_from_tags
from ledgerline.lineage import WINDOW_END
from ledgerline.registry import CHAMPION, alias_version, client
from ledgerline.settings import Settings
from monitoring.family import WINDOW_LABEL_KEY, MonitoringFamily, get_monitoring_family

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

SCORE_COLUMN = "__score__"
#: run metrics ``test_<name>`` (and version tags ``ledgerline.test_<name>``) are the offline baseline
OFFLINE_PREFIX = "test_"


@dataclass(frozen=True)
class Champion:
    """The production model a monitoring run is about, with what its training run recorded."""

    model_name: str
    version: str
    run_id: str
    snapshot_uri: str
    spec: DatasetSpec
    created_at: datetime | None
    offline_metrics: dict[str, float] = field(default_factory=dict)
    lineage: str = "dataset_input"  # or "run_tag" when the dataset input was missing
    family: str | None = None  # from the version's ledgerline.family tag
    #: the end of the data window the champion was trained on (run tag ``ledgerline.window.end``), when it read
    #: dated sources: labels received after it are new to the model, whenever the version was registered
    data_until: datetime | None = None

    @property
    def labels_new_since(self) -> datetime | None:
        """Labels received after this moment are ones the champion never trained on."""
        return self.data_until or self.created_at

    def family_name(self) -> str:
        """The champion's family; a champion without one is an error (never a default family)."""
        return family_from_tags({FAMILY_TAG: self.family} if self.family else {}, f"{self.model_name} v{self.version}")

    @property
    def monitoring(self) -> MonitoringFamily:
        """The monitoring plug-in of the champion's family."""
        return get_monitoring_family(self.family_name())

    @property
    def label_codec(self) -> OutcomeCodec:
        """Decodes the labels the feedback route stored (canonical "1"/"0"; a family's aliases, such as an
        analyst's "fraud", were resolved when the label was accepted)."""
        from features.spec import outcome_codec_of

        return outcome_codec_of(self.spec)


def configure_mlflow(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())


def parse_dataset_source(source: str | None) -> str | None:
    """The path or URI inside an MLflow dataset source (a JSON string such as ``{"uri": "/x/data.parquet"}``)."""
    if not source:
        return None
    text = source.strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    if isinstance(parsed, str):  # a bare path, or JSON that held a string
        value = parsed.strip()
        return value.removeprefix("file://") or None
    if isinstance(parsed, dict):
        for key in ("uri", "path", "url", "location", "source"):
            found = parsed.get(key)
            if isinstance(found, str) and found.strip():
                return found.strip().removeprefix("file://")
    return None


def snapshot_source(run: Run) -> str | None:
    """The training snapshot a run logged with ``mlflow.log_input`` (context ``training`` first)."""
    inputs = list(getattr(run.inputs, "dataset_inputs", None) or [])

    def context(di: Any) -> str:
        return next((t.value for t in (di.tags or []) if t.key == "mlflow.data.context"), "")

    inputs.sort(key=lambda di: context(di) != "training")
    for di in inputs:
        path = parse_dataset_source(di.dataset.source)
        if path:
            return path
    return None


def resolve_champion(settings: Settings, model_name: str) -> Champion:
    """The ``@champion`` of ``model_name``, its run, training snapshot, spec and offline test metrics."""
    import yaml
    from mlflow.exceptions import MlflowException

    c = client(settings)
    version = alias_version(c, model_name, CHAMPION)
    if version is None:
        raise RegistryError(
            f"model '{model_name}' has no @{CHAMPION}; train and promote one first (ledgerline train ... --model-name "
            f"{model_name}), or check the name and MLFLOW_TRACKING_URI"
        )
    mv = c.get_model_version(model_name, version)
    family = family_from_tags(mv.tags, f"{model_name} v{version}")
    run_id = mv.run_id or (mv.tags or {}).get("ledgerline.run_id")
    if not run_id:
        raise RegistryError(f"{model_name} v{version} has no source run; monitoring needs the training run's lineage")
    run = c.get_run(run_id)
    source = snapshot_source(run)
    lineage = "dataset_input"
    if source is None:
        source = run.data.tags.get("ledgerline.snapshot_uri")
        lineage = "run_tag"
        logger.warning("run %s logged no dataset input; using its ledgerline.snapshot_uri tag", run_id)
    if not source:
        raise DataError(
            f"{model_name} v{version} (run {run_id}) recorded no training dataset (mlflow.log_input); "
            f"retrain it with the Ledgerline pipeline so monitoring has a reference"
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = c.download_artifacts(run_id, "data/spec.yaml", tmp)
        except MlflowException as exc:
            raise DataError(f"run {run_id} of {model_name} v{version} has no data/spec.yaml artifact") from exc
        spec = DatasetSpec.from_dict(yaml.safe_load(Path(local).read_text()), source=f"run {run_id} data/spec.yaml")
    metrics = {
        k.removeprefix(OFFLINE_PREFIX): float(v) for k, v in run.data.metrics.items() if k.startswith(OFFLINE_PREFIX)
    }
    tag_prefix = f"ledgerline.{OFFLINE_PREFIX}"
    for key, tag in (mv.tags or {}).items():  # fall back to the version tags the pipeline writes
        name = key.removeprefix(tag_prefix)
        if key.startswith(tag_prefix) and name not in metrics:
            try:
                metrics[name] = float(tag)
            except ValueError:
                logger.warning("%s v%s: version tag %s=%r is not a number; ignored", model_name, version, key, tag)
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    return Champion(model_name, str(version), run_id, source, spec, created, metrics, lineage, family,
                    data_until=_window_end(run.data.tags.get(WINDOW_END)))


def _window_end(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        logger.warning("run tag %s=%r is not an ISO datetime; labels are counted from the version's creation", WINDOW_END, raw)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference_cache_path(settings: Settings, champion: Champion) -> Path:
    """Where the conformed reference and the champion's scores on it are kept between runs.

    The key covers everything the content depends on (run, version, snapshot file, spec), so a
    cached file is never stale: a new champion, snapshot or spec gets a new file.
    """
    import hashlib

    snap = Path(champion.snapshot_uri)
    stat = snap.stat() if snap.exists() else None
    key = "|".join([
        champion.run_id,
        champion.version,
        str(snap.resolve()) if stat else champion.snapshot_uri,
        str(stat.st_size if stat else ""),
        str(stat.st_mtime_ns if stat else ""),
        champion.spec.to_yaml(),
    ])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in champion.model_name)
    return settings.resolved_data_dir() / "monitoring" / "reference" / safe / f"v{champion.version}-{digest}.parquet"


def load_reference(
    settings: Settings, champion: Champion, *, scorer: Callable[[pd.DataFrame], np.ndarray] | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The champion's training snapshot conformed to its spec, and the champion's scores on it.

    The first run for a champion conforms the snapshot and scores it with the model (or
    ``scorer``), then keeps both in ``reference_cache_path`` (written atomically); later
    runs read that file.
    """
    import pandas as pd

    features = champion.spec.feature_names
    cache = reference_cache_path(settings, champion)
    if cache.exists():
        try:
            cached = pd.read_parquet(cache)
            return cached[features], cached[SCORE_COLUMN].to_numpy()
        except (OSError, ValueError, KeyError) as exc:  # unreadable: rebuild it
            logger.warning("reference cache %s is unreadable (%s); rebuilding it", cache, exc)
    frame, scores = _build_reference(settings, champion, scorer)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        frame.assign(**{SCORE_COLUMN: scores}).to_parquet(tmp, index=False)
        os.replace(tmp, cache)
    except OSError as exc:  # a read-only data dir only costs time
        logger.warning("could not cache the reference at %s: %s", cache, exc)
    return frame, scores


def _build_reference(
    settings: Settings, champion: Champion, scorer: Callable[[pd.DataFrame], np.ndarray] | None
) -> tuple[pd.DataFrame, np.ndarray]:
    from features.sources import load_snapshot
    from features.spec import conform

    try:
        frame = conform(load_snapshot(champion.snapshot_uri), champion.spec)
    except DataError as exc:
        raise DataError(
            f"cannot read the training snapshot of {champion.model_name} v{champion.version} "
            f"({champion.snapshot_uri}): {exc}; the reference must stay where training wrote it"
        ) from exc
    features = frame[champion.spec.feature_names]
    if scorer is None:
        configure_mlflow(settings)
        model_uri = f"models:/{champion.model_name}/{champion.version}"
        scores = champion.monitoring.reference_scores(model_uri, frame, champion.spec)
    else:
        scores = scorer(features)
    return features, scores


# --- the prediction log ---------------------------------------------------------------


def _is_psycopg2_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2"


def _window_filter(model_name: str, version: str | None, start: datetime, end: datetime) -> list[Any]:
    p = db.predictions.c
    conds = [p.model_name == model_name, p.created_at >= start, p.created_at < end]
    if version is not None:
        conds.append(p.model_version == version)
    return conds


def load_prediction_window(
    url: str,
    model_name: str,
    version: str | None,
    start: datetime,
    end: datetime,
    *,
    numeric: list[str],
    categorical: list[str],
) -> pd.DataFrame:
    """Inputs (one column per feature) and the score (``SCORE_COLUMN``) of predictions in ``[start, end)``.

    ``version=None`` takes every version of the model. Non-numeric junk in a numeric
    input becomes missing (and is counted in ``df.attrs["junk"]``).
    """
    import pandas as pd

    engine = db.engine_for(url)
    features = [*numeric, *categorical]
    if _is_psycopg2_postgres(engine):
        df = _copy_window(engine, model_name, version, start, end, features, categorical)
    else:
        p = db.predictions.c
        q = sa.select(p.inputs, p.score).where(*_window_filter(model_name, version, start, end))
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        records = [r.inputs if isinstance(r.inputs, dict) else json.loads(r.inputs) for r in rows]
        df = pd.DataFrame.from_records(records, columns=features) if records else pd.DataFrame(columns=features)
        df[SCORE_COLUMN] = [r.score for r in rows]
        for c in categorical:
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    junk: dict[str, int] = {}
    for c in [*numeric, SCORE_COLUMN]:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            coerced = pd.to_numeric(df[c], errors="coerce")
            bad = int((coerced.isna() & df[c].notna()).sum())
            if bad:
                junk[c] = bad
            df[c] = coerced
        df[c] = df[c].astype("float64")
    if junk:
        logger.warning("prediction log of %s: non-numeric values read as missing: %s", model_name, junk)
    df.attrs["junk"] = junk
    return df


def _copy_window(
    engine: sa.Engine,
    model_name: str,
    version: str | None,
    start: datetime,
    end: datetime,
    features: list[str],
    categorical: list[str],
) -> pd.DataFrame:
    import pandas as pd

    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # the log's inputs are ``json`` (text): parsed once per row into typed-as-text columns, the same
        # values ``inputs->>'name'`` gives, which would parse the text again for every feature (8x slower)
        record = ", ".join(f"{_ident(f)} text" for f in features)
        select = ", ".join([*(f"r.{_ident(f)}" for f in features), "p.score"])
        where = "p.model_name = %s AND p.created_at >= %s AND p.created_at < %s"
        params: list[Any] = [model_name, start, end]
        if version is not None:
            where += " AND p.model_version = %s"
            params.append(version)
        source = f"predictions AS p, json_to_record(p.inputs) AS r({record})" if features else "predictions AS p"
        query = cur.mogrify(f"SELECT {select} FROM {source} WHERE {where}", params).decode()
        buf = io.BytesIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", buf)
        cur.close()
    finally:
        raw.close()
    buf.seek(0)
    names = [*features, SCORE_COLUMN]
    if buf.getbuffer().nbytes == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in names})
    # numbers are parsed by the reader (junk leaves a column as text; the caller coerces it);
    # categories stay text, and only an empty field (SQL NULL or a missing key) is missing
    options: dict[str, Any] = {
        "header": None,
        "names": names,
        "dtype": {c: str for c in categorical},
        "keep_default_na": False,
        "na_values": [""],
    }
    try:  # pyarrow's reader is multi-threaded: about twice as fast as the C reader at 1M rows
        return pd.read_csv(buf, engine="pyarrow", **options)
    except (ImportError, ValueError) as exc:
        logger.debug("pyarrow CSV reader failed (%s); using the C reader", exc)
        buf.seek(0)
        return pd.read_csv(buf, low_memory=False, **options)


def _ident(name: str) -> str:
    """A feature name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def count_by_version(url: str, model_name: str, start: datetime, end: datetime) -> dict[str, int]:
    """Predictions per model version in ``[start, end)`` (to explain an empty window)."""
    p = db.predictions.c
    q = (
        sa.select(p.model_version, sa.func.count())
        .where(*_window_filter(model_name, None, start, end))
        .group_by(p.model_version)
    )
    with db.engine_for(url).connect() as conn:
        return {str(v): int(n) for v, n in conn.execute(q)}


@dataclass(frozen=True)
class LabelledWindow:
    y: np.ndarray
    p: np.ndarray
    predictions: int  # predictions in the window (labelled or not)
    labelled: int
    undecodable: int = 0  # stored labels the label codec cannot decode: left out, and logged
    outputs: list[dict[str, Any]] | None = None  # the labelled predictions' answer fields (output_fields)


def count_feedback(url: str, model_name: str, since: datetime, until: datetime) -> int:
    """Feedback rows (labels) of ``model_name`` received in ``[since, until]``, whichever version they label."""
    f = db.feedback.c
    q = sa.select(sa.func.count()).select_from(db.feedback).where(
        f.model_name == model_name, f.received_at >= since, f.received_at <= until
    )
    with db.engine_for(url).connect() as conn:
        return int(conn.execute(q).scalar_one())


def load_labelled_window(
    url: str,
    model_name: str,
    version: str | None,
    start: datetime,
    end: datetime,
    *,
    labels_until: datetime,
    codec: OutcomeCodec,
    output_fields: Sequence[str] = (),
) -> LabelledWindow:
    """Scores and decoded labels of predictions made in ``[start, end)`` whose label arrived by ``labels_until``.

    Feedback stores labels in the codec's canonical form; ``codec.decode`` turns them into what training
    used (1 for the positive class or 0, a class name, a number).
    """
    import numpy as np

    p, f = db.predictions.c, db.feedback.c
    conds = _window_filter(model_name, version, start, end)
    cols = [p.score, f.label, *_output_columns(output_fields)]
    joined = (
        sa.select(*cols)
        .select_from(db.predictions.join(db.feedback, f.prediction_id == p.prediction_id))
        .where(*conds, f.received_at <= labels_until, p.score.is_not(None))
    )
    total = sa.select(sa.func.count()).select_from(db.predictions).where(*conds)
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(joined).all()
        n_total = int(conn.execute(total).scalar_one())
    ys, ps = [], []
    outs: list[dict[str, Any]] = []
    bad: list[str] = []
    for row in rows:
        try:
            ys.append(codec.decode(row.label))
        except ValueError:
            bad.append(str(row.label))
            continue
        ps.append(float(row.score))
        if output_fields:
            outs.append(_answer(row, output_fields))
    if bad:
        logger.warning(
            "feedback of %s: %d stored labels are not in the label codec's canonical form (%s) and were left out, e.g. %s",
            model_name, len(bad), codec.describe(), sorted(set(bad))[:5],
        )
    return LabelledWindow(
        _labels_array(ys),
        np.asarray(ps, dtype=np.float64),
        n_total,
        len(ys),
        len(bad),
        outs if output_fields else None,
    )


def _labels_array(ys: list[Any]) -> np.ndarray:
    """Decoded labels as the codec gave them: names stay objects, numbers keep their type (0/1 ints,
    realised values as floats); none: an empty int array."""
    import numpy as np

    if not ys:
        return np.asarray([], dtype=np.int64)
    if any(isinstance(v, str) for v in ys):
        return np.asarray(ys, dtype=object)
    return np.asarray(ys)


def _output_columns(fields: Sequence[str]) -> list[Any]:
    """``outputs -> 'field'`` of each field (the database extracts them: answers can be large)."""
    return [db.predictions.c.outputs[name].label(f"out_{i}") for i, name in enumerate(fields)]


def _answer(row: Any, fields: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(row, f"out_{i}") for i, name in enumerate(fields)}


#: the key under which :func:`load_window_outputs` puts a prediction's feedback label (None: none yet)
LABEL_KEY = WINDOW_LABEL_KEY


def load_window_outputs(
    url: str, model_name: str, version: str | None, start: datetime, end: datetime, fields: Sequence[str],
    *, labels_until: datetime | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Scores and the answer ``fields`` of the predictions in ``[start, end)``, for window checks; with
    ``labels_until``, each answer also carries its feedback label so far under :data:`LABEL_KEY`."""
    import numpy as np

    p, f = db.predictions.c, db.feedback.c
    cols = [p.score, *_output_columns(fields)]
    source: Any = db.predictions
    if labels_until is not None:
        cols.append(f.label)
        source = db.predictions.outerjoin(
            db.feedback, (f.prediction_id == p.prediction_id) & (f.received_at <= labels_until)
        )
    q = sa.select(*cols).select_from(source).where(*_window_filter(model_name, version, start, end))
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(q).all()
    scores = np.asarray([np.nan if r.score is None else float(r.score) for r in rows], dtype=np.float64)
    answers = [_answer(r, fields) for r in rows]
    if labels_until is not None:
        for a, r in zip(answers, rows, strict=True):
            a[LABEL_KEY] = r.label
    return scores, answers
