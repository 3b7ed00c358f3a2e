"""Suite files: schema defaults, overrides, budgets, and errors that name the file, the key and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fbench.errors import FbenchError
from fbench.suite.load import builtin_suites, load_suite, validate_suite_file
from fbench.suite.problems import SuiteError
from fbench.suite.recipes import recipe_with_overrides
from fbench.suite.schema import Budget, budget_cuts

FULL = """
name: multiview
description: "pose robustness"
dataset: kdef
data:
  kdef: data/kdef
protocol:
  kind: stratified_kfold
  folds: 10
views:
  - {name: lopo, kind: leave_one_pose_out}
  - {name: frontal_to_profile, kind: cross_pose, params: {train_poses: [S, HL, HR], test_poses: [FL, FR]}}
conditions:
  - pose
  - occlusion:kind=rectangle,severity=0.25
  - mask:kind=surgical
architectures:
  - name: lanmsff
    variants:
      - {}
      - {mass_att: false}
    input_size: [64, 64]
    recipe: {epochs: 40, optimizer: sgd}
  - name: scan_cci
seeds: [0, 1, 2]
budget: quick
"""

MINIMAL = """
name: tiny
architectures:
  - name: lanmsff
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, **kwargs) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as caught:
        load_suite(path, **kwargs)
    assert validate_suite_file(path, **kwargs) == caught.value.problems
    return caught.value.problems


def only_problem(tmp_path: Path, text: str, **kwargs) -> str:
    problems = problems_of(tmp_path, text, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


# ------------------------------------------------------------------------------------------------ valid suites


def test_full_suite_loads_with_defaults(tmp_path):
    path = write(tmp_path, FULL)
    suite = load_suite(path)
    assert validate_suite_file(path) == []
    assert suite.source == str(path)
    assert suite.conditions[0] == "clean" and "pose" in suite.conditions
    assert suite.protocol.val_fraction == 0.1 and not suite.protocol.leaky
    assert suite.synthetic_fallback and suite.tracking.enabled and suite.tracking.uri is None
    assert suite.tracking.resolved_uri(tmp_path) == f"sqlite:///{(tmp_path.resolve() / 'mlflow.db').as_posix()}"
    assert suite.experiment == "multiview"
    assert (suite.output, suite.reports, suite.device, suite.efficiency_only) == ("runs", "reports", "auto", False)
    assert [name for name, _ in suite.protocols()] == ["main", "lopo", "frontal_to_profile"]
    entries = suite.architecture_entries()
    assert [e.label for e in entries] == ["lanmsff", "lanmsff[mass_att=false]", "scan_cci"]
    entry = entries[1]
    assert (entry.name, entry.options, entry.input_size, entry.recipe) == (
        "lanmsff", {"mass_att": False}, (64, 64), {"epochs": 40, "optimizer": "sgd"})
    assert entry.train_conditions == ()
    data = suite.to_dict()
    assert data["architectures"][0]["input_size"] == [64, 64] and data["seeds"] == [0, 1, 2]


def test_minimal_suite_gets_every_default(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    assert suite.dataset == "kdef" and suite.seeds == [0, 1, 2] and suite.budget == "quick"
    assert suite.conditions == ["clean"] and suite.views == [] and suite.train_conditions == []
    assert suite.protocol.kind == "stratified_kfold" and suite.protocol.folds == 10
    assert suite.architectures[0].variants == [{}]
    assert suite.protocol.split_kwargs() == {"val_fraction": 0.1, "folds": 10}


# ------------------------------------------------------------------------------------------------ key errors


def test_misspelt_top_level_key_names_file_key_and_suggestion(tmp_path):
    problems = problems_of(tmp_path, "name: x\narchtectures:\n  - name: lanmsff\n")
    path = str(tmp_path / "suite.yaml")
    assert f"{path}: archtectures: unknown key 'archtectures' (did you mean 'architectures'?)" in problems
    assert f"{path}: architectures: required key is missing" in problems


def test_misspelt_nested_key_suggests_field(tmp_path):
    problem = only_problem(tmp_path, MINIMAL + "protocol: {kind: subject_kfold, fold: 5}\n")
    assert problem.endswith("protocol.fold: unknown key 'fold' (did you mean 'folds'?)")


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    problem = only_problem(tmp_path, MINIMAL + "tracking: {zzz: 1}\n")
    assert "tracking.zzz: unknown key 'zzz'; valid keys: enabled, uri, experiment" in problem


def test_unknown_architecture_suggests_registered_name(tmp_path):
    problem = only_problem(tmp_path, "name: x\narchitectures:\n  - name: lanmsf\n")
    assert "architectures.0.name: unknown architecture 'lanmsf'" in problem
    assert "Did you mean 'lanmsff'?" in problem


def test_bad_variant_option_lists_valid_options(tmp_path):
    problem = only_problem(tmp_path, "name: x\narchitectures:\n  - name: lanmsff\n    variants: [{massatt: false}]\n")
    assert "architectures.0.variants.0: architecture 'lanmsff' has no variant option 'massatt'" in problem
    assert "mass_att: bool = True" in problem and "pwfs" in problem


def test_bad_option_value_and_shared_options(tmp_path):
    problems = problems_of(tmp_path, """
        name: x
        architectures:
          - name: lanmsff
            options: {in_chans: 2}
            variants: [{}, {mass_att: maybe}]
        """)
    assert any("architectures.0.options:" in p and "in_chans" in p for p in problems)
    assert any("architectures.0.variants.1:" in p and "not a boolean" in p for p in problems)


def test_bad_recipe_key_suggests_field(tmp_path):
    problem = only_problem(tmp_path, "name: x\narchitectures:\n  - name: lanmsff\n    recipe: {epoch: 5}\n")
    assert "architectures.0.recipe.epoch: Recipe has no field 'epoch' (did you mean 'epochs'?)" in problem


def test_bad_recipe_values_are_reported_at_their_key(tmp_path):
    problems = problems_of(tmp_path, """
        name: x
        architectures:
          - name: lanmsff
            recipe: {epochs: many, schedule: {kindd: cosine}}
          - name: scan_cci
            recipe: {optimizer: sgdd}
        """)
    assert any("architectures.0.recipe.schedule.kindd:" in p and "did you mean 'kind'?" in p for p in problems)
    assert any("architectures.1.recipe:" in p and "unknown optimizer 'sgdd'" in p for p in problems)
    problems = problems_of(tmp_path, "name: x\narchitectures:\n  - name: lanmsff\n    recipe: {epochs: many}\n")
    assert "architectures.0.recipe.epochs:" in problems[0] and "'many'" in problems[0]


def test_recipe_with_overrides_builds_a_recipe():
    from fbench.contract import Recipe

    recipe = recipe_with_overrides(Recipe(), {"epochs": 3, "schedule": "cosine", "augmentation": ["hflip"],
                                              "betas": [0.8, 0.9]})
    assert recipe.epochs == 3 and recipe.schedule.kind == "cosine" and recipe.betas == (0.8, 0.9)
    assert recipe.augmentation[0].name == "hflip"
    with pytest.raises(FbenchError, match="did you mean 'batch_size'"):
        recipe_with_overrides(Recipe(), {"batchsize": 8})


def test_bad_condition_is_reported(tmp_path):
    problem = only_problem(tmp_path, MINIMAL + "conditions: [clean, 'mask:kind=surgicl']\n")
    assert "conditions.1:" in problem and "surgicl" in problem and "surgical" in problem


def test_unknown_perturbation_and_training_condition(tmp_path):
    problems = problems_of(tmp_path, MINIMAL + "conditions: [mask, blur]\ntrain_conditions: [pose]\n")
    assert any("conditions.1:" in p and "unknown perturbation 'blur'" in p for p in problems)
    assert any("train_conditions.0:" in p and "not a training perturbation" in p for p in problems)


def test_unknown_protocol_kind_suggests_one(tmp_path):
    problem = only_problem(tmp_path, MINIMAL + "protocol: {kind: subject_kfld}\n")
    assert "protocol.kind: unknown split protocol 'subject_kfld' (did you mean 'subject_kfold'?)" in problem


def test_protocol_params_and_folds_are_checked(tmp_path):
    problems = problems_of(tmp_path, MINIMAL + textwrap.dedent("""
        protocol: {kind: stratified_kfold, folds: 1}
        views:
          - {name: cp, kind: cross_pose, params: {train_pose: [S]}}
        """))
    assert any("protocol.folds: a k-fold protocol needs folds >= 2" in p for p in problems)
    assert any("views.0.params.train_pose:" in p and "did you mean 'train_poses'" in p for p in problems)
    assert any("views.0.params: split protocol 'cross_pose' needs parameter 'test_poses'" in p for p in problems)


def test_several_problems_are_all_reported(tmp_path):
    problems = problems_of(tmp_path, """
        name: Bad Name
        dataset: kdf
        protocol: {kind: stratifed_kfold}
        conditions: ['mask:kind=surgicl']
        architectures:
          - name: lanmsf
          - name: lanmsff
            variants: [{massatt: false}]
        seeds: [1, 1]
        budget: quik
        device: gpu
        """)
    joined = "\n".join(problems)
    for expected in ("name:", "dataset: unknown dataset 'kdf' (did you mean 'kdef'?)", "protocol.kind:",
                     "conditions.0:", "architectures.0.name:", "architectures.1.variants.0:",
                     "seeds.1: seed 1 is listed twice", "budget: unknown budget 'quik' (did you mean 'quick'?)",
                     "device: unknown device"):
        assert expected in joined, expected
    assert len(problems) == 9
    error = SuiteError(problems)
    assert str(error).startswith("9 problems in the suite:")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    problem = only_problem(tmp_path, "name: x\narchitectures:\n  - name: lanmsff\n   bad: [\n")
    assert problem.startswith(f"{tmp_path / 'suite.yaml'}:4:")
    assert "YAML syntax error" in problem


def test_yaml_python_tag_is_rejected(tmp_path):
    marker = tmp_path / "executed"
    problem = only_problem(tmp_path, f"name: x\nfoo: !!python/object/apply:os.system ['touch {marker}']\n")
    assert problem.startswith(f"{tmp_path / 'suite.yaml'}:2:")
    assert "python/object" in problem and "safe_load" in problem
    assert not marker.exists()


def test_not_a_mapping_and_missing_file(tmp_path):
    assert "this one is empty" in only_problem(tmp_path, "")
    assert "this one is a list" in only_problem(tmp_path, "- a\n- b\n")
    assert "cannot read the suite file" in validate_suite_file(tmp_path / "nope.yaml")[0]


def test_builtin_suite_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = load_suite("multiview")
    assert suite.name == "multiview"
    assert Path(suite.source).name == "multiview.yaml" and Path(suite.source).is_file()
    assert validate_suite_file("multiview") == []
    # a path still works, and a file of that name in the working folder wins over the built-in suite
    write(tmp_path, MINIMAL, name="multiview")
    assert load_suite("multiview").name == "tiny"
    assert load_suite(tmp_path / "multiview").name == "tiny"


def test_unknown_builtin_suite_name_lists_the_builtin_suites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = validate_suite_file("multiveiw")
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith("multiveiw: ") and "(did you mean 'multiview'?)" in problems[0]
    assert problems[0].endswith("built-in suites: " + ", ".join(builtin_suites()))
    with pytest.raises(SuiteError, match="no built-in suite of that name; built-in suites: "):
        load_suite("nosuch")
    # with a suffix or a folder, the argument is a path: no built-in suite is looked up
    assert "cannot read the suite file" in validate_suite_file("multiview.yaml")[0]
    assert "cannot read the suite file" in validate_suite_file("suites/multiview")[0]


def test_builtin_suites_are_packaged():
    assert {"ablations", "efficiency", "masked", "multiview", "occlusion", "smoke"} <= set(builtin_suites())


def test_the_papers_released_protocols_are_packaged_leaky_and_the_default_stays_clean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_suite("multiview").leaky_views() == [] and load_suite("multiview").protocol.val_fraction > 0
    paper = load_suite("lanmsff-paper")
    assert paper.leaky_views() == ["main"] and paper.leaky_views(synthetic_fallback=True) == ["main"]
    assert (paper.protocol.kind, paper.protocol.folds, paper.protocol.val_fraction) == ("stratified_kfold", 10, 0)
    faithful = load_suite("scan_cci-faithful", ["architectures.0.options.backbone_weights=/w/resnet50.pth"])
    assert faithful.leaky_views() == ["main"] and faithful.leaky_views(synthetic_fallback=True) == ["main"]
    assert faithful.protocol.params == {"max_train_per_class": 20000} and faithful.protocol.val_fraction == 0
    [entry] = faithful.architectures
    assert entry.options == {"bn_first_epoch_only": True, "backbone_weights": "/w/resnet50.pth"}
    assert entry.recipe["lr"] == 0.001 and entry.recipe["early_stopping"]["restore_best"] is True
    assert entry.recipe["early_stopping"]["monitor"] == "val_accuracy"


@pytest.mark.parametrize("name", builtin_suites())
def test_every_builtin_suite_validates(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert validate_suite_file(name) == []


def test_duplicate_labels_are_an_error(tmp_path):
    problem = only_problem(tmp_path, """
        name: x
        architectures:
          - name: lanmsff
            variants: [{}, {mass_att: false}]
          - name: scan_cci
            label: lanmsff
        """)
    assert "architectures.1.variants.0: label 'lanmsff' is used twice (also at architectures.0.variants.0)" in problem


def test_explicit_label_with_variants(tmp_path):
    suite = load_suite(write(tmp_path, "name: x\narchitectures:\n  - name: lanmsff\n    label: L\n"
                                       "    variants: [{}, {pwfs: false, dilation: false}]\n"))
    assert [e.label for e in suite.architecture_entries()] == ["L", "L[pwfs=false,dilation=false]"]


# ------------------------------------------------------------------------------------------------ overrides


def test_set_overrides_scalar_nested_and_list_index(tmp_path):
    path = write(tmp_path, FULL)
    suite = load_suite(path, overrides=["budget=smoke", "protocol.folds=5", "architectures.0.recipe.epochs=5",
                                        "architectures.0.variants.1.pwfs=false", "seeds=[7]",
                                        "tracking.uri=sqlite:///x.db"])
    assert suite.budget == "smoke" and suite.protocol.folds == 5 and suite.seeds == [7]
    assert suite.architectures[0].recipe == {"epochs": 5, "optimizer": "sgd"}
    assert suite.architectures[0].variants == [{}, {"mass_att": False, "pwfs": False}]
    assert suite.tracking.uri == "sqlite:///x.db"


def test_set_creates_missing_mappings(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL), overrides=["budgets.quick.max_folds=2", "protocol.leaky=true"])
    assert suite.effective_budget().max_folds == 2 and suite.protocol.leaky is True


def test_set_new_key_is_rejected_by_validation(tmp_path):
    problem = only_problem(tmp_path, MINIMAL, overrides=["protocol.fols=3"])
    assert "protocol.fols: unknown key 'fols' (did you mean 'folds'?)" in problem
    assert "[from --set protocol.fols=3]" in problem


def test_set_errors(tmp_path):
    assert "expected KEY.PATH=VALUE" in only_problem(tmp_path, MINIMAL, overrides=["budget"])
    assert "index 3 is out of range" in only_problem(tmp_path, MINIMAL, overrides=["architectures.3.name=x"])
    assert "is a list; index it with a number" in only_problem(tmp_path, FULL, overrides=["seeds.first=1"])
    assert "seeds is not in the file" in only_problem(tmp_path, MINIMAL, overrides=["seeds.first=1"])
    assert "architectures.0.variants is not in the file" in only_problem(
        tmp_path, MINIMAL, overrides=["architectures.0.variants.0.pwfs=false"])
    assert "name is str, not a mapping" in only_problem(tmp_path, MINIMAL, overrides=["name.x=1"])


def test_budget_and_data_arguments(tmp_path, monkeypatch):
    suite = load_suite(write(tmp_path, FULL), budget="paper", data={"kdef": "/elsewhere", "rafdb": "/raf"})
    assert suite.budget == "paper" and suite.data == {"kdef": "/elsewhere", "rafdb": "/raf"}
    problem = only_problem(tmp_path, MINIMAL, data={"kdfe": "/x"})
    assert "data.kdfe: unknown dataset 'kdfe' (did you mean 'kdef'?)" in problem and "--data kdfe=/x" in problem


def test_only_filters_by_name_or_label(tmp_path):
    path = write(tmp_path, FULL)
    assert [a.name for a in load_suite(path, only=["scan_cci"]).architectures] == ["scan_cci"]
    suite = load_suite(path, only=["lanmsff[mass_att=false]"])
    assert [e.label for e in suite.architecture_entries()] == ["lanmsff[mass_att=false]"]
    assert suite.source == str(path)
    assert len(load_suite(path, only=["lanmsff"]).architecture_entries()) == 2
    with pytest.raises(SuiteError, match=r"--only: unknown architecture name or label 'scan_ci' "
                                         r"\(did you mean 'scan_cci'\?\)"):
        load_suite(path, only=["scan_ci"])


# ------------------------------------------------------------------------------------------------ budgets


def test_builtin_budgets_and_cuts(tmp_path):
    path = write(tmp_path, FULL)
    assert budget_cuts(load_suite(path, budget="paper")) == []
    quick = load_suite(path)
    cuts = budget_cuts(quick)
    assert cuts[:3] == ["folds 10 → 1", "pose splits capped at 1 (lopo)", "seeds 3 → 1"]
    assert cuts[3].startswith("time-planned: about 100 s per main cell, 27 s per extra-view cell on the run's "
                              "device; epochs (3 to 40)") and "fewer than 700 images is budget-limited" in cuts[3]
    assert cuts[4:] == ["validation images capped at 140 per split"]
    smoke = load_suite(path, budget="smoke").effective_budget()
    assert smoke.max_folds == 1 and smoke.seeds == 1 and smoke.max_epochs <= 2 and smoke.data_fraction < 1
    assert "training images × 0.1" in budget_cuts(load_suite(path, budget="smoke"))


def test_budget_overrides_merge_with_builtins(tmp_path):
    suite = load_suite(write(tmp_path, FULL + textwrap.dedent("""
        budgets:
          quick: {max_folds: 5, epoch_scale: 0.5}
          tiny: {max_folds: 2, seeds: 2, max_train_images: 100}
        """)))
    quick = suite.effective_budget()
    assert (quick.max_folds, quick.epoch_scale, quick.max_epochs, quick.seeds) == (5, 0.5, 40, 1)
    tiny = suite.effective_budget("tiny")
    assert (tiny.max_folds, tiny.seeds, tiny.epoch_scale, tiny.max_train_images) == (2, 2, 1.0, 100)
    assert budget_cuts(suite, "tiny") == ["folds 10 → 2", "pose splits capped at 2 (lopo)", "seeds 3 → 2",
                                          "training images capped at 100"]
    assert load_suite(write(tmp_path, FULL, "b.yaml"), overrides=["budgets.tiny.seeds=1", "budget=tiny"]
                      ).effective_budget().seeds == 1


def test_budget_problems(tmp_path):
    problems = problems_of(tmp_path, MINIMAL + "budgets:\n  smoke: {min_epochs: 5}\n  quick: {max_fold: 2}\n")
    assert any("budgets.smoke: min_epochs (5) is above max_epochs (2)" in p for p in problems)
    assert any("budgets.quick.max_fold: unknown key 'max_fold' (did you mean 'max_folds'" in p for p in problems)


def test_budget_arithmetic():
    budget = Budget(max_folds=3, epoch_scale=0.2, max_epochs=15, min_epochs=2, data_fraction=0.5, seeds=2,
                    max_train_images=100)
    assert budget.folds(10) == 3 and budget.folds(2) == 2
    assert budget.epochs(100) == 15 and budget.epochs(20) == 4 and budget.epochs(5) == 2 and budget.epochs(1) == 1
    assert budget.seed_list([4, 5, 6]) == [4, 5] and budget.train_images(1000) == 100
    assert budget.train_images(50) == 25
    assert Budget().epochs(37) == 37 and Budget().seed_list([1, 2, 3]) == [1, 2, 3]


def test_training_conditions_by_suite_and_by_architecture(tmp_path):
    text = (MINIMAL + "train_conditions: ['mask:kind=surgical']\n").replace(
        "  - name: lanmsff\n", "  - name: lanmsff\n  - name: lanmsff\n    label: clean-lanmsff\n"
                              "    train_conditions: []\n", 1)
    path = write(tmp_path, text)
    assert validate_suite_file(path) == []
    entries = load_suite(path).architecture_entries()
    assert [(e.label, e.train_conditions) for e in entries][:2] == [
        ("lanmsff", ("mask:kind=surgical",)), ("clean-lanmsff", ())]
    bad = MINIMAL.replace("  - name: lanmsff\n", "  - name: lanmsff\n    train_conditions: ['mask:kind=surgicle']\n", 1)
    problems = problems_of(tmp_path, bad)
    assert any("architectures.0.train_conditions.0:" in p and "surgical" in p for p in problems), problems


def test_engine_settings_reach_the_cells_and_only_non_defaults_change_keys(tmp_path):
    from fbench.run.cells import expand_cells

    path = write(tmp_path, MINIMAL)
    plain = expand_cells(load_suite(path), "/data", True, {"main": 10}, "smoke")
    tuned = expand_cells(load_suite(path, ["engine.compile=true", "engine.eval_batch_size=64"]), "/data", True,
                         {"main": 10}, "smoke")
    assert plain[0].engine.non_default() == {} and "engine" not in plain[0].to_dict()
    assert tuned[0].engine.non_default() == {"compile": True, "eval_batch_size": 64}
    assert tuned[0].to_dict()["engine"] == {"compile": True, "eval_batch_size": 64} and tuned[0].key != plain[0].key
    problems = problems_of(tmp_path, MINIMAL + "engine: {compiel: true}\n")
    assert any("engine.compiel" in p and "compile" in p for p in problems), problems


# ------------------------------------------------------------------------------------- hostile or absurd input


def test_duplicate_keys_are_an_error_naming_the_key_and_its_lines(tmp_path):
    problems = problems_of(tmp_path, """
        name: first
        architectures:
          - name: lanmsff
            recipe: {epochs: 3, epochs: 4}
        name: second
    """)
    assert any(p.endswith("duplicate key 'name' (first on line 2); YAML would silently keep the last one: remove "
                          "or rename one of them") and ":6:1:" in p for p in problems), problems
    assert any("duplicate key 'epochs'" in p and ":5:" in p for p in problems), problems


def test_merge_keys_are_not_duplicates(tmp_path):
    path = write(tmp_path, """
        name: merged
        architectures:
          - name: lanmsff
            recipe: &base {epochs: 3, lr: 0.01}
          - name: scan_cci
            recipe: {<<: *base, epochs: 4}
    """)
    assert load_suite(path).architectures[1].recipe == {"epochs": 4, "lr": 0.01}


def test_absurd_input_size_is_refused(tmp_path):
    problem = only_problem(tmp_path, MINIMAL + "    input_size: 100000\n")
    assert "architectures.0.input_size: 100000 x 100000 pixels is too large: each side is at most 4096" in problem


def test_channels_and_img_size_the_run_cannot_use_are_refused(tmp_path):
    problems = problems_of(tmp_path, """
        name: timmy
        architectures:
          - name: timm/resnet18
            variants: [{in_chans: 4}, {in_chans: 1}, {img_size: 100000}]
    """)
    assert len(problems) == 2, problems
    assert "architectures.0.variants.0: the model takes 4-channel images" in problems[0]
    assert "architectures.0.variants.2: an input of 100000 x 100000 pixels is too large" in problems[1]


def test_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]  # 9**9 values
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 400
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(SuiteError) as caught:
            load_suite(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.problems == [f"{path}: the suite expands to more than 100,000 YAML values through its aliases "
                                     "(*name); a suite needs far fewer: write the values out, or use fewer nested "
                                     "aliases"]
    assert peak < 20_000_000


def test_recursive_alias_and_oversized_file_are_refused(tmp_path):
    assert "an alias refers to the value that contains it" in only_problem(tmp_path, "name: &a [1, *a]\n")
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n# " + "x" * 1_100_000 + "\n")
    with pytest.raises(SuiteError, match="larger than 1,000,000 bytes"):
        load_suite(big)


def test_suite_name_is_limited_in_length(tmp_path):
    problem = only_problem(tmp_path, MINIMAL.replace("name: tiny", "name: " + "a" * 300))
    assert "name: String should have at most 64 characters" in problem


def test_control_characters_in_slurm_values_are_refused(tmp_path):
    problems = problems_of(tmp_path, MINIMAL + (
        "resources:\n"
        "  partition: \"gpu\\n#SBATCH --account=someone-else\"\n"
        "  setup: [\"module load cuda\", \"echo\\rhi\"]\n"
        "  slurm_params: {qos: \"high\\n#SBATCH --x\"}\n"))
    assert len(problems) == 3, problems
    assert all("may not hold control characters such as a newline" in p for p in problems)
    assert "resources.partition" in problems[0]
