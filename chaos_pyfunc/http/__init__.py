"""The HTTP server: `chaos serve`, the gateway in front of MLflow's scoring app, the connection
edge, API keys, TLS, metrics, the observer and the shutdown budget."""
