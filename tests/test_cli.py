"""The fbench command: list, profile, and exit status 2 with one clear message on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fbench.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "fbench 0.1.0" in capsys.readouterr().out


def test_list_architectures_shows_builtins_and_the_timm_family(capsys):
    status, out, _ = run(capsys, "list", "architectures", "--json")
    assert status == 0
    names = [row["name"] for row in json.loads(out)]
    assert {"lanmsff", "scan_cci", "timm/<model>"} <= set(names)


def test_list_with_a_pattern_expands_the_family(capsys):
    status, out, _ = run(capsys, "list", "architectures", "timm/resnet1*", "--json")
    names = {row["name"] for row in json.loads(out)}
    assert status == 0
    assert {"timm/resnet18", "timm/resnet101"} <= names
    assert "lanmsff" not in names


def test_list_table(capsys):
    status, out, _ = run(capsys, "list", "--variants")
    assert status == 0
    assert "lanmsff" in out and "shared_heads" in out


def test_profile_lanmsff_json(capsys):
    status, out, _ = run(capsys, "profile", "lanmsff", "--json", "--no-speed")
    result = json.loads(out)
    assert status == 0
    assert result["params"] == result["trainable_params"] == 356_294
    assert abs(result["macs"] - 300.6e6) / 300.6e6 < 0.01
    assert result["input_size"] == [1, 64, 64]


@pytest.mark.parametrize("variant, params", [([], 70_196_307), (["--variant", "shared_heads=true"], 13_536_339)])
def test_profile_scan_cci_json(capsys, variant, params):
    status, out, _ = run(capsys, "profile", "scan_cci", *variant, "--json", "--no-speed")
    result = json.loads(out)
    assert status == 0
    assert result["params"] == params
    assert result["macs"] == pytest.approx(6.98e9, rel=0.01)
    assert not result["macs_disagree"] and result["unrecognised_operators"] == []


def test_profile_variant_and_speed(capsys):
    status, out, _ = run(capsys, "profile", "lanmsff", "--variant", "pwfs=false", "in_chans=3", "--json",
                         "--device", "cpu", "--warmup", "1", "--repeats", "3", "--batch-size", "2")
    result = json.loads(out)
    assert status == 0
    assert result["options"]["pwfs"] is False and result["input_size"] == [3, 64, 64]
    assert result["latency_ms"] > 0 and result["throughput_batch_size"] == 2


def test_profile_table(capsys):
    status, out, _ = run(capsys, "profile", "lanmsff", "--no-speed")
    assert status == 0
    assert "356,294" in out and "MACs (fvcore)" in out and "not counted" in out


@pytest.mark.parametrize("argv, message", [
    (["profile", "lanmsf"], "Did you mean 'lanmsff'"),
    (["profile", "lanmsff", "--variant", "massatt=false"], "no variant option 'massatt'"),
    (["profile", "lanmsff", "--variant", "pwfs"], "--variant expects KEY=VALUE"),
    (["profile", "lanmsff", "--variant", "in_chans=2"], "not one of: 1, 3"),
    (["profile", "lanmsff", "--input-size", "48", "48", "--no-speed"], "divisible by 32"),
    (["profile", "lanmsff", "--device", "cuda:7", "--no-speed"], "cuda:7"),
    (["profile", "timm/not_a_model"], "unknown timm model"),
    (["--plugin", "no_such_plugin_module", "list"], "cannot import plugin"),
])
def test_bad_input_exits_2_with_one_message(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback():
    from fbench.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        main(["profile", "lanmsf", "--debug"])


def test_console_script_exit_status_and_suggestion():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    completed = subprocess.run([sys.executable, "-m", "fbench", "profile", "lanmsf"], capture_output=True,
                               text=True, env=env, timeout=120)
    assert completed.returncode == 2
    assert "Did you mean 'lanmsff'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_plugin_that_raises_is_one_line_and_exit_2(capsys, tmp_path):
    plugin = tmp_path / "raises.py"
    plugin.write_text("raise ValueError('my plugin is broken on purpose')\n")
    status, _, err = run(capsys, "--plugin", str(plugin), "list", "architectures")
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "raises.py" in err and "ValueError: my plugin is broken on purpose" in err


def test_broken_entry_point_is_listed_as_broken(capsys, monkeypatch, tmp_path, clean_architectures):
    # entry points are lazy entries (Registry.discover): one missing, one whose import raises
    clean_architectures.register_lazy("broken_fer", "fbench_no_such_plugin_pkg:model", source="entry point of x")
    (tmp_path / "fbench_raising_entry.py").write_text("raise RuntimeError('entry point broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    clean_architectures.register_lazy("raising_fer", "fbench_raising_entry:model", source="entry point of y")
    status, out, _ = run(capsys, "list", "architectures", "--json")
    assert status == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["broken_fer"]["broken"] is True
    assert "fbench_no_such_plugin_pkg" in rows["broken_fer"]["description"]
    assert rows["raising_fer"]["broken"] is True
    assert "RuntimeError: entry point broken on purpose" in rows["raising_fer"]["description"]
    assert "lanmsff" in rows and not rows["lanmsff"].get("broken")
    status, _, err = run(capsys, "profile", "broken_fer")
    assert status == 2 and "broken_fer" in err and "Traceback" not in err


def test_specless_plugin_is_listed_and_profiled(capsys, tmp_path, clean_architectures):
    plugin = tmp_path / "tinyfer.py"
    plugin.write_text(
        "import torch.nn as nn\n"
        "from fbench.registry import register_architecture\n"
        "@register_architecture('tinyfer')\n"
        "def tinyfer(num_classes: int) -> nn.Module:\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.Flatten(), nn.Linear(3136, num_classes))\n"
    )
    try:
        status, out, err = run(capsys, "--plugin", str(plugin), "list", "architectures", "--json")
        assert status == 0, err
        rows = {row["name"]: row for row in json.loads(out)}
        assert rows["tinyfer"]["input"] == "3x224x224"
        status, out, err = run(capsys, "profile", "tinyfer", "--plugin", str(plugin))
        assert status == 0, err
        assert "tinyfer" in out
    finally:
        sys.modules.pop("fbench_plugin_tinyfer", None)


@pytest.mark.parametrize("flag, value", [("--partition", "gpu\n#SBATCH --account=x"),
                                         ("--slurm-param", "qos=high\n#SBATCH --x"),
                                         ("--slurm-setup", "module load cuda\r")])
def test_control_characters_in_slurm_flags_exit_2_before_anything_runs(capsys, tmp_path, monkeypatch, flag, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text("name: tiny\narchitectures:\n  - name: lanmsff\n")
    status, _, err = run(capsys, "run", "suite.yaml", "--executor", "slurm", flag, value)
    assert status == 2
    assert f"{flag} may not hold control characters such as a newline" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]  # nothing built, nothing tracked
