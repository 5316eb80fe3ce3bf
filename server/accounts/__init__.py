"""Accounts: who the caller is and how often they may try (rate limits, safe redirects)."""
