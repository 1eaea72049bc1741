"""The ``modeltrace demo`` command: synthetic data, a served model, drifting traffic."""
