"""chaos: the appetence scoring service (an MLflow pyfunc enriched live from socio_eco)."""
