"""Numbers -> documents: ``tables`` (ReportData and the leaderboard), ``plots`` (matplotlib figures), ``document``
(the Markdown and self-contained HTML writers, also used by tune) and ``suite`` (a suite run's reports)."""
