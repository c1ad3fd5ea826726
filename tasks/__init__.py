"""Prefect tasks: one pipeline stage each (see segen.stages for the graph)."""
