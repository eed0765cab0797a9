"""The exceptions slogate raises, grouped by whose problem they are.

A user's mistake (bad matrix, bad option) is a ``ConfigError``; the plugin turns it into
``pytest.UsageError``.  Trouble with the engine or the machine is an ``InfrastructureError``,
which Allure shows as *broken*, apart from SLO breaches, which are assertions (*failed*).
"""


class SlogateError(Exception):
    """Base class of every error slogate raises on purpose."""


class ConfigError(SlogateError):
    """Bad user input: a matrix file, an option value, an SLO expression."""


class InfrastructureError(SlogateError):
    """The run itself broke (engine died, connection refused): not a verdict on performance."""


class EngineStartError(InfrastructureError):
    """The engine did not become ready."""


class EngineDiedError(InfrastructureError):
    """The engine process exited while the suite was using it."""


class InvalidMeasurement(SlogateError):
    """The case ran, but its numbers cannot be trusted (client bottleneck, too few samples)."""
