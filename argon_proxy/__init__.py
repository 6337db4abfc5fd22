"""Argon: a MongoDB wire-protocol proxy that gives MongoDB Git-like branches."""

__version__ = "0.1.0"
