"""Lessons: the Markdown/notebook format (parse, notebook), the catalog (loader), what
`lessons check` finds (check), HTML for the page (render), the verdict on a run (grade),
notebook metadata for `lessons import` (importer). All pure except loader's and check's
file reads, and rehearsal: the thin shell that runs every exercise in real kernels."""
