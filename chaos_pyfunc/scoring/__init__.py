"""Scoring: the pyfunc model, its pipeline, the compiled trees, the live indicators, the reason
codes, batch scoring, and which package version a model needs."""
