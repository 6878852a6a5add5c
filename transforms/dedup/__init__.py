"""De-duplication by event_id: in a table (`table`, both pipelines and the batch index of
events across partitions) and against what streaming remembers (`recent`). Pure Arrow."""
