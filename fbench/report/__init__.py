"""Numbers -> documents: Markdown and self-contained HTML reports with tables and plots (also used by tune)."""
