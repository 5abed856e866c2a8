"""Runtime: wiring and lifecycle of one serving process, its workers and their fan-in."""
