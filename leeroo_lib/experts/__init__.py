"""Experts: the catalog and its prices, live models, lm-eval scoring, 4-bit, expert servers."""
