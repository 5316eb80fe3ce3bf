"""Paid access: the subscription state machine (pure), the billing interface and its Stripe shell,
and webhook intake. Only `stripe_shell` imports `stripe`."""
