"""``fbench tune``: Optuna search over an architecture's recipe and variants (see ``fbench.tune.study``).

``space`` parses search spaces, ``objective`` trains one trial on a fold's training part and scores it on its
validation part, ``study`` runs the study on its storage, ``output`` writes ``best.yaml``, plots and the report,
``params`` feeds ``best.yaml`` back into suites, and ``cluster`` runs a study's trials as workers submitted
through the cluster executors of ``fbench run``. Optuna is imported only when a study runs.
"""

from fbench.tune.study import TuneOptions, TuneResult, run_tune

__all__ = ["TuneOptions", "TuneResult", "run_tune"]
