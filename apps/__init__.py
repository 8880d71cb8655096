"""The top layer: the command line, the demo and the Airflow task bodies. Nothing below imports it."""
