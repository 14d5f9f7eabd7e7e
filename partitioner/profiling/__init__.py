"""Timing primitives and the SQLite measurement cache."""
