-- One PostgreSQL server, one database per concern, as on a cluster: the Dagster instance, the warehouse, MLflow's
-- tracking and registry store, and the shared Optuna studies.
CREATE DATABASE dagster;
CREATE DATABASE warehouse;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
