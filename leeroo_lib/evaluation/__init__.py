"""Evaluation: Table 1 rows with intervals, AIQ, multi-call strategies, policy signal, tables and plots."""
