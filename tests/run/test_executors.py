"""Cluster resources: the suite's, the executor's defaults and the command line's, merged and checked."""

from __future__ import annotations

import pytest

from fbench.errors import FbenchError
from fbench.run.executors import resolve_resources
from fbench.suite.schema import ResourcesConfig


def test_command_line_overrides_the_suite_and_the_defaults():
    resources = resolve_resources("slurm", ResourcesConfig(partition="cpu", setup=["module load cuda"]),
                                  {"partition": "gpu", "setup": ["source .venv/bin/activate"]})
    assert resources.partition == "gpu"
    assert resources.setup == ["module load cuda", "source .venv/bin/activate"]
    assert resources.cpus_per_cell == 8


@pytest.mark.parametrize("overrides, where", [
    ({"partition": "gpu\n#SBATCH --account=someone-else"}, "resources.partition (--partition)"),
    ({"slurm_params": {"qos": "high\n#SBATCH --x"}}, "resources.slurm_params (--slurm-param)"),
    ({"slurm_params": {"qos\r": "high"}}, "resources.slurm_params (--slurm-param)"),
    ({"setup": ["echo hi\x00"]}, "resources.setup (--slurm-setup)"),
])
def test_control_characters_from_the_command_line_are_refused(overrides, where):
    with pytest.raises(FbenchError, match=rf"^{where.replace('(', '[(]').replace(')', '[)]')} may not hold control "
                                          "characters such as a newline"):
        resolve_resources("slurm", ResourcesConfig(), overrides)
