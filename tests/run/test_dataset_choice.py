"""Which dataset a suite runs on: a given location that is bad is an error naming the path and where it was given
(``--data``, the suite's ``data:`` block, ``$FBENCH_DATA_<NAME>``) and nothing is trained; the synthetic stand-in
only when no location was given at all, and then it says so (terminal, report title, ``fbench status``)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from fbench.cli import main
from fbench.errors import FbenchError
from fbench.pipeline import run_suite
from fbench.progress import print_leaderboards
from fbench.run.context import Progress, RunOptions, choose_dataset, prepare
from fbench.suite.load import load_suite

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


@pytest.fixture(autouse=True)
def no_environment_location(monkeypatch):
    monkeypatch.delenv("FBENCH_DATA_KDEF", raising=False)


def places(tmp_path: Path) -> list[str]:
    return [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}"]


def suite_file(tmp_path: Path, data: dict[str, str]) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"] = data
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def refuse_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("nothing may be trained when the dataset location is bad")

    monkeypatch.setattr("fbench.run.cell.train_and_predict", refuse)


def options(tmp_path: Path, **changes) -> RunOptions:
    # a synthetic folder that does not exist: a fallback would have to build it, which the tests must never see
    base = dict(tracking=False, cache_dir=tmp_path / "cache", device="cpu", synthetic_folder=tmp_path / "no-synth")
    return RunOptions(**{**base, **changes})


def test_a_data_flag_that_does_not_exist_names_the_flag_and_trains_nothing(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    missing = tmp_path / "nowhere" / "KDEF"
    suite = load_suite(SMOKE, places(tmp_path), data={"kdef": str(missing)})  # as `fbench run --data` does
    with pytest.raises(FbenchError) as error:
        run_suite(suite, options(tmp_path))
    message = str(error.value)
    assert f"'{missing}' (from --data kdef={missing}) does not exist" in message and "suite" not in message
    assert not (tmp_path / "runs").exists() and not (tmp_path / "no-synth").exists()
    with pytest.raises(FbenchError, match=rf"from --data kdef={missing}\) does not exist"):
        run_suite(load_suite(SMOKE, places(tmp_path)), options(tmp_path, data={"kdef": str(missing)}))


def test_a_suite_data_block_that_does_not_exist_names_the_suite_file(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    path = suite_file(tmp_path, {"kdef": str(tmp_path / "gone")})
    with pytest.raises(FbenchError, match=rf"'{tmp_path / 'gone'}' \(from the suite's data: block \({path}\)\) "
                                          "does not exist"):
        run_suite(load_suite(path, places(tmp_path)), options(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_an_environment_location_that_does_not_exist_names_the_variable(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    monkeypatch.setenv("FBENCH_DATA_KDEF", str(tmp_path / "absent"))
    with pytest.raises(FbenchError, match=rf"'{tmp_path / 'absent'}' \(from \$FBENCH_DATA_KDEF\) does not exist"):
        run_suite(load_suite(SMOKE, places(tmp_path)), options(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_an_empty_folder_or_one_without_images_is_an_error(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FbenchError, match=rf"'{empty}' \(from --data kdef={empty}\) is an empty folder"):
        run_suite(load_suite(SMOKE, places(tmp_path), data={"kdef": str(empty)}), options(tmp_path))
    (empty / "README.txt").write_text("the photos are elsewhere\n")
    with pytest.raises(FbenchError, match=rf"no \.JPG files under '{empty}'.*\(path '{empty}' from --data kdef="):
        run_suite(load_suite(SMOKE, places(tmp_path), data={"kdef": str(empty)}), options(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_the_first_given_location_wins_and_only_it_is_checked(tmp_path, tiny_kdef, monkeypatch):
    monkeypatch.setenv("FBENCH_DATA_KDEF", str(tmp_path / "absent"))
    suite = load_suite(suite_file(tmp_path, {"kdef": str(tmp_path / "gone")}), data={"kdef": str(tiny_kdef)})
    choice = choose_dataset(suite, None, lambda text: None, tmp_path / "no-synth")
    assert (choice.root, choice.origin, choice.fallback) == (tiny_kdef, f"--data kdef={tiny_kdef}", False)
    with pytest.raises(FbenchError, match="from the suite's data: block"):
        choose_dataset(load_suite(suite_file(tmp_path, {"kdef": str(tmp_path / "gone")})), None, print,
                       tmp_path / "no-synth")


def test_no_location_at_all_runs_on_the_synthetic_stand_in_and_says_so(tmp_path, tiny_kdef):
    notes: list[str] = []
    prepared = prepare(load_suite(SMOKE, places(tmp_path)), options(tmp_path, synthetic_folder=tiny_kdef),
                       Progress(note=notes.append))
    assert prepared.choice.fallback and prepared.choice.synthetic and prepared.table.synthetic  # MLflow's tag
    assert any(note.startswith("SYNTHETIC DATA: no location was given for 'kdef'") for note in notes), notes
    strict = load_suite(SMOKE, [*places(tmp_path), "synthetic_fallback=false"])
    with pytest.raises(FbenchError, match="has no location: pass --data kdef=PATH"):
        prepare(strict, options(tmp_path, synthetic_folder=tiny_kdef), Progress())


def test_the_stand_in_is_in_the_report_title_the_caption_and_fbench_status(tmp_path, tiny_kdef, monkeypatch, capsys):
    suite = load_suite(SMOKE, [*places(tmp_path)], only=["resnet18"])
    run = run_suite(suite, options(tmp_path, synthetic_folder=tiny_kdef, budget="smoke"))
    assert run.dataset.fallback and [o.status for o in run.outcomes] == ["complete"]
    assert run.report["markdown"].read_text().splitlines()[0].endswith("(synthetic data)")
    captions = {}
    for synthetic, fallback in ((True, True), (True, False), (False, False)):
        changed = dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, synthetic=synthetic,
                                                                       fallback=fallback))
        out = io.StringIO()
        print_leaderboards(Console(file=out, width=400, force_terminal=False), changed)
        captions[synthetic, fallback] = " ".join(out.getvalue().split())  # the caption wraps at the table's width
    assert "; SYNTHETIC DATA (stand-in: no dataset location was given)" in captions[True, True]
    assert "; SYNTHETIC DATA" in captions[True, False] and "stand-in" not in captions[True, False]
    assert "SYNTHETIC" not in captions[False, False]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth-kdef").symlink_to(tiny_kdef)  # where `fbench status` looks for the stand-in
    assert main(["status", str(SMOKE), "--only", "resnet18", "--set", f"output={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC DATA: no dataset location was given, so this suite runs on the synthetic stand-in" in out
    assert "1 finished" in out
