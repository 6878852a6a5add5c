"""Beam composites of the batch pipeline only: read, stage, commit."""
