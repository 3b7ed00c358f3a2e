"""Free-form expression names (folder names, manifest labels) to indices in ``CANONICAL_LABELS``.

Dataset adapters with fixed codes (KDEF "AF", RAF-DB 1..7, FER-2013 0..6, ...) keep their own explicit maps; this
module is for formats where the user writes the names: image folders and CSV manifests.
"""

from __future__ import annotations

from fbench.data.table import CANONICAL_LABELS, LABEL_INDEX
from fbench.errors import FbenchError

# canonical name -> accepted spellings (compared after normalise()).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "neu"),
    "happy": ("happy", "happiness", "joy", "joyful", "hap"),
    "sad": ("sad", "sadness", "unhappy"),
    "surprise": ("surprise", "surprised", "sur"),
    "fear": ("fear", "fearful", "afraid", "scared", "fea"),
    "disgust": ("disgust", "disgusted", "dis"),
    "anger": ("anger", "angry", "ang"),
    "contempt": ("contempt", "contemptuous", "con"),
}

_LOOKUP: dict[str, int] = {
    spelling: LABEL_INDEX[canonical] for canonical, spellings in SYNONYMS.items() for spelling in spellings
}


def normalise(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def accepted_names() -> str:
    """The accepted names, one group per canonical label, for error messages."""
    return "; ".join(f"{canonical} ({', '.join(s for s in SYNONYMS[canonical] if s != canonical)})"
                     for canonical in CANONICAL_LABELS)


def find_label(name: str) -> int | None:
    """The canonical index of ``name``, or None when it is not an accepted name."""
    return _LOOKUP.get(normalise(name))


def canonical_label(name: str) -> int:
    """The index in ``CANONICAL_LABELS`` of an expression name or synonym (case-insensitive)."""
    index = find_label(name)
    if index is None:
        raise FbenchError(f"unknown expression label {name!r}. Accepted names (case-insensitive): "
                          f"{accepted_names()}")
    return index
