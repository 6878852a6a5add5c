"""All I/O: files locally and on GCS, the pseudonymisation key, the writer lease, committed
files, staging a partition, reading written files back for the privacy scan."""
