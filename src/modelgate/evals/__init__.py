"""Evaluations: datasets (dataset.py), scorers (scorers.py) and what results say (stats.py). A run
goes through the gateway's pipeline in process (server/evals.py, `modelgate eval run`)."""
