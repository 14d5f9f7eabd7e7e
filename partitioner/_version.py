"""hetpart's version: one place, read by the package facade, plans and the build."""

__version__ = "0.1.0"
