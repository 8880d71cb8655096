-- Runs once, when the postgres container initialises an empty data volume
-- (/docker-entrypoint-initdb.d). One server, one database per component.
CREATE DATABASE mlflow;      -- MLflow tracking + model registry backend store
CREATE DATABASE ledgerline;  -- Ledgerline app database (ledger, predictions)
CREATE DATABASE airflow;     -- Airflow metadata database
