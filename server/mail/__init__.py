"""Emails: what each kind says (templates, pure rendering) and how the server asks for one."""
