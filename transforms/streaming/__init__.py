"""Beam composites of the streaming pipeline only: de-duplication with expiring state, live
aggregates, and the sinks that write panes."""
