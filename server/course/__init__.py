"""Lessons: the Markdown/notebook format (parse, notebook), the catalog (loader),
HTML for the page (render) and the verdict on a run (grade). Pure except loader's file reads."""
