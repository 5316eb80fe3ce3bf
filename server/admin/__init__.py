"""The admins' wing: the dashboard's queries and aggregates, the runs view, the audit log.

Pure rules (parsing a page's parameters, formatting) are functions on values;
the queries are thin async shells over the engine."""
