"""The cache wing: freshness and single-flight decisions (pure), an in-process tier, a Redis tier."""
