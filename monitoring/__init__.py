"""Monitoring: drift and label-based performance jobs that decide when a production model needs retraining.

Entry points: :func:`monitoring.jobs.run_monitoring` (the Airflow monitoring DAG, ``ledgerline monitor``),
:func:`monitoring.jobs.pending_retrain_decisions` and :func:`monitoring.jobs.mark_acted` (the retrain DAG).
"""
