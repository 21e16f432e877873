"""Helpers the tests share: real sockets, real processes, nothing mocked."""
