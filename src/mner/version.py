"""The package version, in one place (read by the package, saved models and the service)."""

__version__ = "0.1.0"
