"""``fbench tune``: Optuna search over an architecture's recipe and variants (see ``fbench.tune.study``).

``objective`` trains one trial on a fold's training part and scores it on its validation part, ``study`` runs
the study on its storage, ``output`` writes ``best.yaml``, plots and the report, and ``workers`` runs a study's
trials as workers submitted through the cluster executors of ``fbench run``. Search spaces and feeding
``best.yaml`` back into suites belong to the suite (``fbench.suite.search``, ``fbench.suite.tuned``). Optuna is
imported only when a study runs.
"""

from fbench.tune.study import TuneOptions, TuneResult, run_tune

__all__ = ["TuneOptions", "TuneResult", "run_tune"]
