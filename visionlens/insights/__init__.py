"""Insights: the model's blind spots and the dataset's mistakes, found without being asked.

Each analysis module turns stored data (evaluations, boxes, fields, vectors, image hashes) into ``Finding``s;
``finding.save_run`` stores them so the app, the CLI and the agents read the same evidence.
"""

from .finding import KINDS, Finding, load_findings, save_run

__all__ = ["KINDS", "Finding", "load_findings", "save_run"]
