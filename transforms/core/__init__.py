"""The pure core: validation, normalisation, the privacy rule, blocks, aggregates, the
manifest and stats. Imports schemas and itself only: no Beam, no I/O."""
