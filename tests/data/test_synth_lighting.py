"""The synthetic set's lighting knob: the default studio light is unchanged, a side light relights the same
faces (a cross-dataset target), and the marker file records it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fbench.data.synth.build import MARKER, SynthConfig, build_synthetic_kdef, image_rng, sample_nuisance
from fbench.errors import FbenchError


def test_side_light_keeps_the_draws_and_moves_the_light():
    studio = sample_nuisance(image_rng(0, "F", 1, 0, "HA", "S"), "HA", "S")
    default = sample_nuisance(image_rng(0, "F", 1, 0, "HA", "S"), "HA", "S", lighting="studio")
    side = sample_nuisance(image_rng(0, "F", 1, 0, "HA", "S"), "HA", "S", lighting="side")
    assert studio == default
    assert (side.yaw, side.intensity, side.au_gain, side.noise_seed) == (studio.yaw, studio.intensity,
                                                                           studio.au_gain, studio.noise_seed)
    assert abs(side.light[0]) > abs(np.sin(np.radians(55))) * 0.9  # from the side: 62..84 degrees of azimuth
    assert side.ambient < studio.ambient


def test_lighting_is_checked_and_recorded_in_the_marker(tmp_path):
    with pytest.raises(FbenchError, match="lighting must be one of"):
        SynthConfig(lighting="moonlight")
    config = SynthConfig(identities=1, sessions=1, image_size=(64, 48), poses=("S",), expressions=("HA", "NE"),
                         lighting="side")
    build_synthetic_kdef(tmp_path / "side", config, workers=1)
    assert json.loads((tmp_path / "side" / MARKER).read_text())["lighting"] == "side"
