"""asset-valuation: gradient boosting regression of a value (price, yield) with calibrated intervals and reasons.

The core (no MLflow, no I/O); the plug-ins (train.py, serve.py, monitor.py) call:

- ``data.generate(rows, seed)``, ``data.default_spec(model_name)`` (target, time and segment by role);
- ``fit.columns_of(spec)`` / ``fit.infer_columns(frame, target, time=, segment=)`` -> ``AssetColumns``;
- ``fit.time_split(frame, time_column, test_fraction, seed)`` -> (train, test), latest rows held out;
- ``fit.train(frame, spec_or_columns, AssetParams(...))`` -> ``model.AssetValuationModel``;
- ``fit.evaluate(model, frame, target=None, level=None)`` -> mae, mape, mdape, r2, coverage, interval_width, ...;
- ``fit.segment_metrics(model, frame)`` -> DataFrame per segment;
- ``AssetValuationModel.predict(frame)``, ``.predict_interval(frame, level=None)``, ``.reasons(frame, top)``,
  ``.contributions(frame)``, ``.describe()``;
- ``plots.figures(model, test_frame)`` -> {file name: Figure}.
"""
