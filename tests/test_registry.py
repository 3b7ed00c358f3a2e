"""The registry: lazy entries, families, collisions, did-you-mean, plugins by module."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch.nn as nn

from fbench.contract import Architecture, ArchitectureSpec, Recipe
from fbench.errors import DuplicateNameError, PluginError, UnknownNameError
from fbench.registry import ARCHITECTURES, Registry, get_architecture, load_plugins, register_architecture

SPEC = ArchitectureSpec(input_size=(1, 32, 32), mean=(0.5,), std=(0.5,), recipe=Recipe())


def _linear_factory(num_classes: int, *, width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, num_classes))


def test_register_and_get(clean_architectures):
    @register_architecture("test_linear", spec=SPEC)
    def test_linear(num_classes: int, *, width: int = 4) -> nn.Module:
        return _linear_factory(num_classes, width=width)

    assert isinstance(test_linear, Architecture)
    assert get_architecture("test_linear") is test_linear
    assert "test_linear" in ARCHITECTURES.names()


def test_name_registered_twice_raises(clean_architectures):
    @register_architecture("twice", spec=SPEC)
    def first(num_classes: int) -> nn.Module:
        return _linear_factory(num_classes)

    with pytest.raises(DuplicateNameError, match="'twice' is registered twice"):
        @register_architecture("twice", spec=SPEC)
        def second(num_classes: int) -> nn.Module:
            return _linear_factory(num_classes)


def test_builtin_name_cannot_be_taken_by_a_plugin(clean_architectures):
    with pytest.raises(DuplicateNameError, match="lanmsff"):
        @register_architecture("lanmsff", spec=SPEC)
        def impostor(num_classes: int) -> nn.Module:
            return _linear_factory(num_classes)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'lanmsff'"):
        get_architecture("lanmsf")
    with pytest.raises(UnknownNameError, match="Did you mean 'scan_cci'"):
        get_architecture("scan-cci")


def test_unknown_name_that_is_a_family_member_suggests_the_family():
    with pytest.raises(UnknownNameError, match="Did you mean 'timm/resnet18'"):
        get_architecture("resnet18")


def test_unknown_family_member_suggests_close_members():
    with pytest.raises(UnknownNameError, match="timm/resnet18"):
        get_architecture("timm/resnet181")


def test_lazy_entry_imports_on_first_use():
    registry: Registry[object] = Registry("thing")
    registry.register_lazy("path_join", "os.path:join")
    assert registry.names() == ["path_join"]
    import os.path

    assert registry.get("path_join") is os.path.join


def test_lazy_entry_with_a_bad_target_names_it():
    registry: Registry[object] = Registry("thing")
    registry.register_lazy("ghost", "no_such_module_xyz:thing")
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        registry.get("ghost")
    registry.register_lazy("missing_attr", "os.path:no_such_attribute")
    with pytest.raises(PluginError, match="no attribute 'no_such_attribute'"):
        registry.get("missing_attr")


def test_typed_registry_rejects_wrong_type():
    registry: Registry[Architecture] = Registry("architecture", expected_type=Architecture)
    registry.register_lazy("not_an_arch", "os.path:join")
    with pytest.raises(PluginError, match="must be of type Architecture"):
        registry.get("not_an_arch")


def test_plugin_module_registers_through_decorator(tmp_path, monkeypatch, clean_architectures):
    module = tmp_path / "fbench_test_plugin_mod.py"
    module.write_text(textwrap.dedent('''
        import torch.nn as nn
        from fbench.contract import ArchitectureSpec, Recipe
        from fbench.registry import register_architecture

        @register_architecture("plugin_mlp", spec=ArchitectureSpec((1, 8, 8), (0.0,), (1.0,), Recipe()))
        def plugin_mlp(num_classes: int, *, hidden: int = 16) -> nn.Module:
            return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["fbench_test_plugin_mod"])
    try:
        model = get_architecture("plugin_mlp").build(5, hidden="8")
        assert model[1].out_features == 8
    finally:
        sys.modules.pop("fbench_test_plugin_mod", None)


def test_missing_plugin_module_is_a_clear_error():
    with pytest.raises(PluginError, match="cannot import plugin from 'fbench_no_such_plugin'"):
        load_plugins(["fbench_no_such_plugin"])


def test_module_entry_that_does_not_register_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "fbench_empty_plugin.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[Architecture] = Registry("architecture", expected_type=Architecture)
    registry.register_lazy("empty", "fbench_empty_plugin")
    with pytest.raises(PluginError, match="did not register architecture 'empty'"):
        registry.get("empty")
    sys.modules.pop("fbench_empty_plugin", None)


def test_entry_points_are_discovered_lazily(monkeypatch):
    from importlib.metadata import EntryPoint

    registry: Registry[object] = Registry("thing", entry_point_group="fbench.test_group")
    points = [EntryPoint(name="joiner", value="os.path:join", group="fbench.test_group")]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: points if group == "fbench.test_group"
                        else [])
    assert registry.names() == ["joiner"]
    import os.path

    assert registry.get("joiner") is os.path.join


def test_entry_point_colliding_with_a_builtin_raises(monkeypatch):
    from importlib.metadata import EntryPoint

    registry: Registry[object] = Registry("thing", entry_point_group="fbench.test_group")
    registry.register_lazy("joiner", "os.path:join", source="built-in")
    points = [EntryPoint(name="joiner", value="posixpath:split", group="fbench.test_group")]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: points)
    with pytest.raises(DuplicateNameError, match="'joiner' is registered twice"):
        registry.names()


def test_plugin_file_that_raises_is_one_error_naming_it(tmp_path):
    plugin = tmp_path / "raises.py"
    plugin.write_text("raise RuntimeError('the plugin is broken on purpose')\n")
    with pytest.raises(PluginError, match=r"plugin file '.*raises\.py' failed to import: RuntimeError: the plugin is "
                                          r"broken on purpose") as error:
        load_plugins([str(plugin)])
    assert isinstance(error.value.__cause__, RuntimeError)  # --debug shows the plugin's own traceback
    assert "fbench_plugin_raises" not in sys.modules


def test_plugin_module_that_raises_is_one_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "fbench_raising_plugin.py").write_text("import os\nos.environ['X'] = 1  # TypeError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="plugin from 'fbench_raising_plugin' failed to import: TypeError"):
        load_plugins(["fbench_raising_plugin"])


def test_broken_entry_point_fails_only_when_used(monkeypatch):
    from importlib.metadata import EntryPoint

    registry: Registry[object] = Registry("thing", entry_point_group="fbench.test_group")
    points = [EntryPoint(name="joiner", value="os.path:join", group="fbench.test_group"),
              EntryPoint(name="broken", value="fbench_no_such_module_xyz:model", group="fbench.test_group")]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: points)
    assert registry.names() == ["broken", "joiner"]  # listing names imports nothing
    import os.path

    assert registry.get("joiner") is os.path.join
    with pytest.raises(PluginError, match="thing 'broken'.*fbench_no_such_module_xyz"):
        registry.get("broken")


def test_architecture_without_a_spec_takes_the_documented_defaults(clean_architectures):
    from fbench.contract import BASELINE_RECIPE, DEFAULT_SPEC

    @register_architecture("specless")
    def specless(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, num_classes))

    spec = get_architecture("specless").spec
    assert spec is DEFAULT_SPEC
    assert spec.input_size == (3, 224, 224)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert spec.recipe is BASELINE_RECIPE and spec.recipe.optimizer == "adamw"
