"""Names of evaluation conditions that are not perturbations but subsets of the clean test set."""

from __future__ import annotations

import re

# ``subset:NAME``: clean predictions of the test samples the dataset tags ``cond_NAME`` (e.g. RAF-DB's occlusion
# and pose lists), scored beside the whole test set.
SUBSET_PREFIX = "subset:"
SUBSET_NAME = re.compile(r"^[a-z0-9_]+$")


def is_subset(condition: str) -> bool:
    return condition.startswith(SUBSET_PREFIX)


def subset_column(condition: str) -> str:
    """``"subset:occlusion"`` -> ``"cond_occlusion"``."""
    return "cond_" + condition[len(SUBSET_PREFIX):]
