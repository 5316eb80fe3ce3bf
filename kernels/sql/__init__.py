"""The SQL kernel plugin (SQLite in memory); `python -m kernels.sql -f CONN` starts it."""
