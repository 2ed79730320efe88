"""Analyses over the IR: analytic multiply-adds, parameters, reports."""
from .counts import Cost, Counts, report

__all__ = ["Cost", "Counts", "report"]
