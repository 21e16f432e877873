"""The contract with callers: the input schema, the request bodies accepted, the answers given,
the OpenAPI description. Imports config only (nothing that scores, logs or serves)."""
