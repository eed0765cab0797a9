"""Loads slogate's pytest plugin and the fixture modules; nothing else lives here."""

pytest_plugins = ["slogate.plugin", "fixtures.engine", "fixtures.workload"]
