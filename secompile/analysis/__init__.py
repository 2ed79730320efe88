"""Analyses over the IR: analytic multiply-adds, parameters, reports."""
from .counts import Cost, Counts, count, report

__all__ = ["Cost", "Counts", "count", "report"]
