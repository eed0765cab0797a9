"""The built-in engine simulator (placeholder docstring)."""
