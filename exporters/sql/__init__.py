"""The SQL sink: rollups, audit rows, rejects and cumulative stream state in one transaction."""
