"""slogate: a pytest-based performance test suite for LLM serving engines."""

__version__ = "0.1.0"
