"""The model's life cycle: train, evaluate, the gate, retrain, the registry, drift and monitoring
(the jobs, not the server)."""
