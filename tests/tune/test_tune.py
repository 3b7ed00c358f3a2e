"""fbench tune on a tiny synthetic set: search spaces and their errors, pruning, resume, shared storage, failed
trials, MLflow child runs, no test sample in the objective, and best.yaml fed back into a suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fbench.errors import FbenchError
from fbench.registry import get_architecture
from fbench.suite.load import load_suite, validate_suite_file
from fbench.suite.problems import SuiteError
from fbench.suite.search import default_space, parse_space
from fbench.tune import TuneOptions, run_tune

optuna = pytest.importorskip("optuna")

# A small MLP on 16 x 16 grayscale images, registered from a plugin file that the suite names: a trial takes
# well under a second, and a subprocess finds it the way a user's plugin is found.
TINY_PLUGIN = """
import torch.nn as nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.registry import register_architecture

SPEC = ArchitectureSpec((1, 16, 16), (0.5,), (0.5,), Recipe(optimizer="adam", lr=1e-2, epochs=3, batch_size=32))


@register_architecture("tiny_tune", spec=SPEC)
def tiny_tune(num_classes: int, *, hidden: int = 16, head_dropout: bool = False) -> nn.Module:
    layers = [nn.Flatten(), nn.Linear(256, hidden), nn.ReLU()] + ([nn.Dropout(0.1)] if head_dropout else [])
    return nn.Sequential(*layers, nn.Linear(hidden, num_classes))
"""


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory: pytest.TempPathFactory):
    from fbench.registry import ARCHITECTURES

    path = tmp_path_factory.mktemp("plugin") / "tiny_tune_plugin.py"
    path.write_text(TINY_PLUGIN)
    yield path
    ARCHITECTURES._entries.pop("tiny_tune", None)
    sys.modules.pop("fbench_plugin_tiny_tune_plugin", None)


@pytest.fixture(scope="module")
def tiny_kdef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic identities x 7 expressions x 5 poses (140 images), small: built in seconds."""
    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef

    root = tmp_path_factory.mktemp("synth") / "kdef"
    build_synthetic_kdef(root, SynthConfig(identities=4, sessions=1, image_size=(96, 80)), workers=2)
    return root


def tiny_suite(plugin: Path) -> dict:
    """One fold of a 3-fold stratified split; each trial trains at most 3 epochs on 64 images."""
    return {
        "name": "tiny",
        "dataset": "kdef",
        "synthetic_fallback": False,
        "plugins": [str(plugin)],
        "protocol": {"kind": "stratified_kfold", "folds": 3, "val_fraction": 0.2},
        "architectures": [{"name": "tiny_tune"}, {"name": "lanmsff", "input_size": 32}],
        "seeds": [0],
        "budgets": {"tune": {"max_epochs": 3, "max_train_images": 64}},
        "search": {"tiny_tune": {"lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-1, "log": True},
                                 "options.head_dropout": {"type": "categorical"}}},
    }


def write_suite(tmp_path: Path, plugin: Path, **changes) -> Path:
    raw = {**tiny_suite(plugin), "output": str(tmp_path / "runs"), "reports": str(tmp_path / "reports"), **changes}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tune_options(tmp_path: Path, tiny_kdef: Path, **changes) -> TuneOptions:
    base = dict(architecture="tiny_tune", trials=2, storage=f"sqlite:///{tmp_path / 'optuna.db'}", device="cpu",
                data={"kdef": str(tiny_kdef)}, tracking=False, out=tmp_path / "out", cache_dir=tmp_path / "cache",
                seed=0, report=False)
    return TuneOptions(**{**base, **changes})


# ----------------------------------------------------------------------------------------------- spaces


def test_space_parses_every_distribution_and_declared_variants():
    lanmsff = get_architecture("lanmsff")
    space, problems = parse_space({
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "epochs": {"type": "int", "low": 2, "high": 8, "step": 2},
        "batch_size": [16, 32],
        "schedule.params.factor": {"type": "float", "low": 0.1, "high": 0.5},
        "options.mass_att": {"type": "categorical"},
    }, lanmsff)
    assert problems == []
    kinds = {p.name: (p.kind, p.choices) for p in space.params}
    assert kinds["lr"][0] == "float" and kinds["epochs"][0] == "int"
    assert kinds["batch_size"] == ("categorical", (16, 32))
    assert kinds["options.mass_att"] == ("categorical", (True, False))  # the option's declared values


def test_unknown_parameters_are_errors_with_did_you_mean(tmp_path, tiny_plugin):
    bad = {"lanmsf": {"lr": [0.1]},
           "lanmsff": {"lrr": {"type": "float", "low": 1e-4, "high": 1e-2}, "pwfs": [True, False],
                       "options.mass_at": [True], "weight_decay": {"type": "float", "low": 0.0, "high": 1e-2,
                                                                   "log": True},
                       "epochs": {"type": "int", "low": 1, "hgh": 3}, "optimizer": ["adam", "sgdd"],
                       "batch_size": {"type": "float", "low": 8, "high": 64},
                       "label_smoothing": {"type": "flaot", "low": 0, "high": 0.2}}}
    path = write_suite(tmp_path, tiny_plugin, search=bad)
    problems = "\n".join(validate_suite_file(path))
    expected = [
        "search.lanmsf: no architecture of the suite is named or labelled 'lanmsf' (did you mean 'lanmsff'?)",
        "search.lanmsff.lrr: unknown parameter 'lrr' (did you mean 'lr'?)",
        "search.lanmsff.pwfs: 'pwfs' is a variant option of 'lanmsff'; address it as 'options.pwfs'",
        "search.lanmsff.options.mass_at: architecture 'lanmsff' has no variant option 'mass_at' (did you mean "
        "'mass_att'?)",
        "search.lanmsff.weight_decay.low: a log-scale parameter needs low > 0",
        "search.lanmsff.epochs.hgh: unknown key 'hgh' for an int parameter (did you mean 'high'?)",
        "search.lanmsff.optimizer.choices.1: unknown optimizer 'sgdd'",
        "search.lanmsff.batch_size.type: recipe field 'batch_size' is an integer; search it with type: int",
        "search.lanmsff.label_smoothing.type: unknown distribution type 'flaot' (did you mean 'float'?)",
    ]
    for text in expected:
        assert f"{path}: {text}" in problems, text
    with pytest.raises(SuiteError, match="unknown parameter 'lrr'"):
        load_suite(path)


def test_yaml_exponent_without_a_dot_is_explained():
    _, problems = parse_space({"lr": {"type": "float", "low": "1e-4", "high": 1e-2}}, get_architecture("lanmsff"))
    assert "write 1.0e-4" in problems[0][1]


def test_default_space_covers_the_recipe_and_boolean_variants():
    space = default_space(get_architecture("lanmsff"))
    names = space.names()
    assert names[:3] == ["lr", "weight_decay", "batch_size"]
    assert "options.mass_att" in names and "options.in_chans" not in names  # input-changing options are left out
    assert space.origin == "built-in default"


def test_an_architecture_declares_its_space_beside_its_module(tmp_path, clean_architectures, monkeypatch):
    plugin = tmp_path / "side_plugin.py"
    plugin.write_text(TINY_PLUGIN.replace('"tiny_tune"', '"side_tune"'))
    (tmp_path / "side_plugin.search.yaml").write_text("side_tune:\n  lr: [0.1, 0.01]\n  options.hidden: [8, 32]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from fbench.registry import load_plugins
    from fbench.suite.search import side_file_space

    load_plugins(["side_plugin"])
    space = side_file_space(get_architecture("side_tune"), {}, {})
    assert space is not None and space.names() == ["lr", "options.hidden"]
    assert "side_plugin.search.yaml" in space.origin


# ----------------------------------------------------------------------------------------------- studies


def test_median_pruner_stops_trials_below_the_median():
    """The default pruner on a deterministic objective: after the startup trials, a trial whose validation
    score is below the median of the complete ones at the same epoch is pruned."""
    from fbench.tune.study import MEDIAN_STARTUP_TRIALS, make_pruner

    pruner, _ = make_pruner("median", multi=False, epochs=4)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    scores = [0.5, 0.6, 0.7, 0.1, 0.9]

    def objective(trial):
        score = scores[trial.number]
        for epoch in range(1, 5):
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    study.optimize(objective, n_trials=len(scores))
    states = [t.state.name for t in study.trials]
    assert states[:MEDIAN_STARTUP_TRIALS] == ["COMPLETE"] * MEDIAN_STARTUP_TRIALS
    assert states[3] == "PRUNED" and states[4] == "COMPLETE"
    assert len(study.trials[3].intermediate_values) == 1  # stopped after its first epoch


def test_study_prunes_logs_children_writes_best_and_resumes(tmp_path, tiny_kdef, tiny_plugin, monkeypatch):
    """A validation score that grows with the lr (training is replaced by a scripted curve) and a pruner that
    stops every trial behind the best complete one: trials with a smaller lr than the first are pruned."""
    from mlflow import MlflowClient

    import fbench.tune.objective as objective_module
    import fbench.tune.study as study_module
    from fbench.engine import TrainResult

    def scripted(model, train, val, settings):
        recipe, on_epoch = settings.recipe, settings.on_epoch
        result = TrainResult()
        for epoch in range(1, recipe.epochs + 1):
            record = {"epoch": epoch, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0,
                      "val_accuracy": min(1.0, recipe.lr * 10 + epoch / 100), "lr": recipe.lr, "seconds": 0.0}
            result.history.append(record)
            on_epoch(dict(record))
        return result

    monkeypatch.setattr(objective_module, "train_model", scripted)
    monkeypatch.setattr(study_module, "make_pruner", lambda name, multi, epochs: (
        optuna.pruners.PercentilePruner(99.0, n_startup_trials=1), None))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = load_suite(write_suite(tmp_path, tiny_plugin))
    result = run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=5, tracking=True, tracking_uri=uri,
                                          report=True))
    states = [o.state for o in result.outcomes]
    first_lr = result.outcomes[0].params["lr"]
    assert states[0] == "complete" and "pruned" in states
    for outcome in result.outcomes[1:]:
        if outcome.params["lr"] < first_lr:
            assert outcome.state == "pruned" and len(outcome.history) == 1  # stopped after epoch 1 of 3
    best = yaml.safe_load(result.best_path.read_text())
    assert best["architecture"] == "tiny_tune" and set(best["params"]) == {"lr", "options.head_dropout"}
    assert best["params"]["lr"] == max(o.params["lr"] for o in result.outcomes if o.state == "complete")
    assert best["trials"]["pruned"] == states.count("pruned")
    for name in ("report.md", "report.html", "optimization_history.png", "intermediate_values.png"):
        assert (result.best_path.parent / name).is_file(), name

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-tune").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) - len(children) == 1 and len(children) == 5
    assert sorted(r.data.tags["state"] for r in children) == sorted(states)
    assert all("lr" in r.data.params for r in children)
    complete = [r for r in children if r.data.tags["state"] == "complete"]
    assert all("value.val_accuracy" in r.data.metrics for r in complete)  # the final value
    assert len(client.get_metric_history(complete[0].info.run_id, "val_accuracy")) == 3  # the per-epoch curve

    monkeypatch.undo()
    again = run_tune(load_suite(write_suite(tmp_path, tiny_plugin)), tune_options(tmp_path, tiny_kdef, trials=2))
    study = optuna.load_study(study_name=again.study_name, storage=result.storage)
    assert again.study_name == result.study_name == "tiny-tiny_tune-val_accuracy"
    assert len(study.trials) == 7 and [o.number for o in again.outcomes] == [5, 6]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, tiny_kdef, tiny_plugin):
    search = {"tiny_tune": {"lr": [1.0e30, 1.0e-2], "optimizer": ["sgd"]}}
    suite = load_suite(write_suite(tmp_path, tiny_plugin, search=search))
    result = run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=6, sampler="random", pruner="none"))
    by_state = {o.state: o for o in result.outcomes}
    assert set(by_state) == {"failed", "complete"}, "six random draws of two values should give both"
    assert by_state["failed"].params["lr"] == 1.0e30 and "learning rate" in by_state["failed"].reason
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    fails = [t for t in study.trials if t.state.name == "FAIL"]
    assert fails and all("loss" in t.user_attrs["fail_reason"] for t in fails)
    assert yaml.safe_load(result.best_path.read_text())["params"]["lr"] == 1.0e-2


def test_no_test_sample_reaches_the_objective(tmp_path, tiny_kdef, tiny_plugin, monkeypatch):
    import fbench.tune.objective as objective_module
    from fbench.data.cache import CachedImages

    trained_on: list[str] = []
    looked_up: list[str] = []
    splits = []
    original_train = objective_module.train_model
    original_positions = CachedImages.positions
    original_cell = objective_module.TuningSetup.cell

    def watching_train(model, train, val, *args, **kwargs):
        trained_on.extend([*train.sample_ids, *val.sample_ids])
        return original_train(model, train, val, *args, **kwargs)

    def watching_positions(self, sample_ids):
        looked_up.extend(sample_ids)
        return original_positions(self, sample_ids)

    def watching_cell(self, params):
        splits.append(self.split)
        return original_cell(self, params)

    monkeypatch.setattr(objective_module, "train_model", watching_train)
    monkeypatch.setattr(CachedImages, "positions", watching_positions)
    monkeypatch.setattr(objective_module.TuningSetup, "cell", watching_cell)
    run_tune(load_suite(write_suite(tmp_path, tiny_plugin)), tune_options(tmp_path, tiny_kdef, trials=2))
    test_ids = set(splits[0].test)
    assert test_ids and trained_on and looked_up
    assert not set(trained_on) & test_ids
    assert not set(looked_up) & test_ids  # not even a test image's row is taken from the cache
    assert set(splits[0].val) <= set(trained_on)


def test_multi_objective_gives_a_pareto_front(tmp_path, tiny_kdef, tiny_plugin):
    suite = load_suite(write_suite(tmp_path, tiny_plugin, search={"tiny_tune": {
        "lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-1, "log": True}, "options.hidden": [4, 64]}}))
    result = run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=4, objective="val_accuracy,macs",
                                          report=True))
    assert result.directions == ["maximize", "minimize"]
    assert any("pruning is off" in note for note in result.notes)
    best = yaml.safe_load(result.best_path.read_text())
    assert best["pareto_front"] and set(best["values"]) == {"val_accuracy", "macs"}
    assert {t["trial"] for t in best["pareto_front"]} >= {best["trial"]}
    assert (result.best_path.parent / "pareto_front.png").is_file()


def test_a_leaky_protocol_is_refused_before_any_trial(tmp_path, tiny_kdef, tiny_plugin):
    protocol = {"kind": "stratified_kfold", "folds": 3, "val_fraction": 0.2, "leaky": True}
    suite = load_suite(write_suite(tmp_path, tiny_plugin, protocol=protocol))
    with pytest.raises(FbenchError, match="leaky protocol .* no validation part to score trials on"):
        run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=1))
    assert not (tmp_path / "out").exists()


def test_resuming_a_study_for_another_budget_is_refused(tmp_path, tiny_kdef, tiny_plugin):
    budgets = {"tune": {"max_epochs": 1}, "other": {"max_epochs": 2}}
    suite = load_suite(write_suite(tmp_path, tiny_plugin, budgets=budgets))
    run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=1))
    with pytest.raises(FbenchError, match="was started for something else"):
        run_tune(suite, tune_options(tmp_path, tiny_kdef, trials=1, budget="other"))


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_processes_share_one_storage(tmp_path, tiny_kdef, tiny_plugin, storage):
    path = write_suite(tmp_path, tiny_plugin)
    url = f"journal:{tmp_path / 'study.journal'}" if storage == "journal" else f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [sys.executable, "-m", "fbench", "tune", str(path), "--arch", "tiny_tune", "--trials", "3",
               "--storage", url, "--data", f"kdef={tiny_kdef}", "--no-tracking", "--device", "cpu",
               "--out", str(tmp_path / "out"), "--no-report"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        assert "this run added 3 trials" in " ".join(out.split())
    from fbench.tune.study import resolve_storage

    study = optuna.load_study(study_name="tiny-tiny_tune-val_accuracy", storage=resolve_storage(url)[0])
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert (tmp_path / "out" / "best.yaml").is_file()


# ----------------------------------------------------------------------------------------------- best.yaml


def test_best_yaml_round_trips_into_run_params_and_tuned_from(tmp_path, tiny_kdef, tiny_plugin):
    from fbench.run.context import Progress, RunOptions, prepare

    suite_path = write_suite(tmp_path, tiny_plugin, budget="smoke")  # fixed epochs: keys depend on params only
    result = run_tune(load_suite(suite_path), tune_options(tmp_path, tiny_kdef, trials=1))
    written = yaml.safe_load(result.best_path.read_text())
    options = RunOptions(data={"kdef": str(tiny_kdef)}, tracking=False, device="cpu")
    plain = prepare(load_suite(suite_path), options, Progress()).cells
    tuned = prepare(load_suite(suite_path, params=[result.best_path]), options, Progress()).cells
    assert tuned[0].key != plain[0].key and tuned[1].key == plain[1].key  # only tiny_tune's cells change
    assert tuned[0].recipe.lr == written["params"]["lr"]
    assert tuned[0].options["head_dropout"] == written["params"]["options.head_dropout"]
    assert tuned[0].extra["tuned_from"]["file"] == str(result.best_path.resolve())

    # nested recipe fields replace their block from the resolved recipe; tuned_from: is relative to the suite
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"architecture": "lanmsff", "study": "s", "trial": 3,
                                    "params": {"lr": 0.0042, "options.pwfs": False, "schedule.params.factor": 0.5}}))
    suite_path.write_text(suite_path.read_text() + "tuned_from: best.yaml\n")
    cells = prepare(load_suite(suite_path), options, Progress()).cells
    lanmsff = next(c for c in cells if c.architecture == "lanmsff")
    assert lanmsff.recipe.lr == 0.0042 and lanmsff.options["pwfs"] is False
    assert lanmsff.recipe.schedule.params == {"factor": 0.5, "patience": 8, "threshold": 1e-4,
                                              "threshold_mode": "abs", "monitor": "val_loss"}
    assert lanmsff.extra["tuned_from"]["trial"] == 3


def test_bad_best_yaml_names_the_file_and_key(tmp_path, tiny_plugin):
    suite_path = write_suite(tmp_path, tiny_plugin)
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"architecture": "scan_cci", "params": {"lr": 0.1}}))
    with pytest.raises(SuiteError, match="'scan_cci' .* is not in suite 'tiny'"):
        load_suite(suite_path, params=[best])
    best.write_text(yaml.safe_dump({"architecture": "lanmsff", "params": {"lrr": 0.1}}))
    with pytest.raises(SuiteError, match=r"best.yaml: params.lrr: unknown parameter 'lrr' \(did you mean 'lr'\?\)"):
        load_suite(suite_path, params=[best])
    best.write_text(yaml.safe_dump({"architecture": "lanmsff", "params": {"batch_size": "big"}}))
    with pytest.raises(SuiteError, match="params.batch_size"):
        load_suite(suite_path, params=[best])
    best.write_text("just text\n")
    with pytest.raises(FbenchError, match="a tuning result is a mapping"):
        load_suite(suite_path, params=[best])
    with pytest.raises(FbenchError, match="no such tuning result"):
        load_suite(suite_path, params=[tmp_path / "missing.yaml"])


def test_cli_tune_then_run_with_params(tmp_path, tiny_kdef, tiny_plugin, monkeypatch):
    from fbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FBENCH_CACHE", str(tmp_path / "cache"))
    suite_path = write_suite(tmp_path, tiny_plugin)
    common = ["--data", f"kdef={tiny_kdef}", "--no-tracking", "--device", "cpu"]
    assert main(["tune", str(suite_path), "--arch", "tiny_tune", "--trials", "2", "--no-report", *common]) == 0
    best = tmp_path / "tune" / "tiny-tiny_tune-val_accuracy" / "best.yaml"
    assert best.is_file() and (tmp_path / "optuna.db").is_file()
    assert main(["run", str(suite_path), "--only", "tiny_tune", "--params", str(best), "--no-report", *common]) == 0
    configs = list((tmp_path / "runs" / "tiny").glob("*/config.json"))
    assert configs and "tuned_from" in configs[0].read_text()
    assert main(["tune", str(suite_path), "--arch", "tiny_tun", *common]) == 2  # did-you-mean, exit status 2
