"""Routing: policies, Eq. 1 (batch and online budget rule), the orchestrator, universe (Eq. 2), pools, self-play."""
