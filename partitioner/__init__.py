"""hetpart's compiler core: graph analysis, costing, CP-SAT placement, plans and reports."""

from __future__ import annotations

__version__ = "0.1.0"
