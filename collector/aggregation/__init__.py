"""Aggregation rules: rollup keys, estimation, token resolution, cumulative deltas."""
