"""Pricing: every report's cost at the price valid at its instant (``rates``: the rule,
``file``: the price file, ``builtin``: the genai-prices fallback, ``table``: the lookup,
``watch``: reloads)."""
