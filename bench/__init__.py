"""Benchmarks of airflow-provider-cfbilling against what a user would otherwise pick (see README.md)."""
