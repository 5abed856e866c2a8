"""Tools that are not pipeline stages: synthetic traffic, senders, the load generator, the demo."""
