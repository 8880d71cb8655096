"""``POST /v1/models/{name}/forecast`` and ``/actuals`` on the real app: points and bounds from the served
version's precomputed table, 404 naming an unknown series, 422 naming the field, actuals stored per
(series, date) with a repeat replacing the value."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def server(trained_forecast, fresh_app_db_url, tmp_path, live_app, sv):  # noqa: ANN001, ANN201
    platform = trained_forecast.settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})
    return live_app(sv.serving_settings(models=[trained_forecast.model_name]), platform)


def test_forecast_answers_from_the_table_and_actuals_are_stored(server, trained_forecast, fresh_app_db_url, sv):
    import sqlalchemy as sa

    from families.spending_forecast import tables
    from families.spending_forecast.model import load_forecast_model
    from ledgerline import db

    name = trained_forecast.model_name
    model = load_forecast_model(f"models:/{name}/{trained_forecast.version}")
    sid = model.series_ids[3]
    with server.client() as c:
        r = c.post(f"/v1/models/{name}/forecast", json={"series_id": sid, "horizon": 4, "interval": 0.95}, headers=sv.HEADERS)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == trained_forecast.version and body["series_id"] == sid and body["interval"] == 0.95
        rows = model.table[model.table["series_id"] == sid].head(4)
        assert [p["ds"] for p in body["points"]] == list(rows["ds"].dt.strftime("%Y-%m-%d"))
        assert [p["yhat_upper"] for p in body["points"]] == pytest.approx(list(rows["upper_95"]))
        assert [p["yhat_lower"] for p in body["points"]] == pytest.approx(list(rows["lower_95"]))

        r = c.post(f"/v1/models/{name}/forecast", json={"series_id": "nobody/rent", "horizon": 3}, headers=sv.HEADERS)
        assert r.status_code == 404 and "series 'nobody/rent' is not in" in r.json()["detail"]
        r = c.post(f"/v1/models/{name}/forecast", json={"series_id": sid, "horizon": 13}, headers=sv.HEADERS)
        assert r.status_code == 422 and "horizon" in r.text
        r = c.post(f"/v1/models/{name}/forecast", json={"series_id": sid, "horizon": 3, "interval": 0.5}, headers=sv.HEADERS)
        assert r.status_code == 422 and "interval" in r.text
        assert c.post(f"/v1/models/{name}/forecast", json={"series_id": sid, "horizon": 3}).status_code == 401

        r = c.post(f"/v1/models/{name}/predict", json={"series_id": sid, "horizon": 2, "interval": 0.8}, headers=sv.HEADERS)
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"][0]["points"]) == 2
        r = c.post(f"/v1/models/{name}/predict?explain=false", json={"series_id": sid, "horizon": 2, "interval": None},
                   headers=sv.HEADERS)
        assert r.status_code == 200, r.text  # every predictor takes explain (this answered 500 once)
        assert len(r.json()["predictions"][0]["points"]) == 2

        first = body["points"][0]["ds"]
        actuals = [{"series_id": sid, "ds": first, "y": 10.0}, {"series_id": sid, "ds": first, "y": 12.5}]
        r = c.post(f"/v1/models/{name}/actuals", json={"actuals": actuals}, headers=sv.HEADERS)
        assert r.status_code == 200 and r.json()["recorded"] == 1
        r = c.post(f"/v1/models/{name}/actuals", json={"actuals": [{"series_id": "nobody", "ds": first, "y": 1}]},
                   headers=sv.HEADERS)
        assert r.status_code == 404 and "nobody" in r.text
    with db.engine_for(fresh_app_db_url).connect() as conn:
        rows = conn.execute(sa.select(tables.forecast_actuals)).all()
    assert [(r.series_id, str(r.ds), r.y) for r in rows] == [(sid, first, 12.5)]


def test_actuals_must_fit_the_series_grid_range_and_horizon_and_a_misfit_records_nothing(
    server, trained_forecast, fresh_app_db_url, sv
):
    import pandas as pd
    import sqlalchemy as sa

    from families.spending_forecast import tables
    from families.spending_forecast.model import load_forecast_model
    from ledgerline import db

    name = trained_forecast.model_name
    model = load_forecast_model(f"models:/{name}/{trained_forecast.version}")
    sid = model.series_ids[3]
    rows = model.table[model.table["series_id"] == sid]
    first, last = rows["ds"].min(), rows["ds"].max()
    length = int(model.lineage.set_index("series_id").loc[sid, "length"])
    start = (first - pd.DateOffset(months=length)).date()
    ok = {"series_id": sid, "ds": str(first.date()), "y": 10.0}
    cases = [
        ({"y": 1e308}, "y", "out_of_range"),
        ({"y": -5.0}, "y", "negative"),
        ({"ds": "1900-01-01"}, "ds", "before_series"),
        ({"ds": str((first + pd.Timedelta(days=14)).date())}, "ds", "off_grid"),
        ({"ds": str((last + pd.DateOffset(months=1)).date())}, "ds", "beyond_horizon"),
        ({"ds": str((pd.Timestamp(start) - pd.DateOffset(months=1)).date())},
         "ds", "before_series"),
    ]
    with server.client() as c:
        for change, field, kind in cases:
            r = c.post(f"/v1/models/{name}/actuals", json={"actuals": [ok, {**ok, **change}]}, headers=sv.HEADERS)
            assert r.status_code == 422, (change, r.text)
            errors = r.json()["errors"]
            assert [(e["field"], e["type"]) for e in errors] == [(f"body.actuals.1.{field}", kind)], (change, errors)
            assert f"body.actuals.1.{field}" in r.json()["detail"] and "nothing was recorded" in r.json()["detail"]
        # the edges themselves are fine: the first training period, the forecast's last period, zero
        edges = [{**ok, "ds": str(start)}, {**ok, "ds": str(last.date()), "y": 0.0}]
        r = c.post(f"/v1/models/{name}/actuals", json={"actuals": edges}, headers=sv.HEADERS)
        assert r.status_code == 200 and r.json()["recorded"] == 2, r.text
    with db.engine_for(fresh_app_db_url).connect() as conn:
        stored = conn.execute(sa.select(tables.forecast_actuals.c.ds)).scalars().all()
    assert sorted(str(d) for d in stored) == [str(start), str(last.date())]  # none of the refused requests' rows
