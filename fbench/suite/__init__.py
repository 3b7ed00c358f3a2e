"""A suite file -> a validated Suite.

``schema`` (the pydantic models, budgets), ``load`` (YAML, built-in suites by name, ``--set``, tuned parameters),
``checks`` (names against the registries), ``problems`` (SuiteError and the ``FILE: key.path: message`` format),
``recipes`` (recipe overrides), ``conditions`` (the condition grammar), ``search`` (search spaces) and ``tuned``
(``best.yaml`` fed back into a suite). Nothing is imported here, so importing one module loads only what it needs.
"""
