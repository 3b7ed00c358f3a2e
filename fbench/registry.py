"""Typed registries with lazy ``"module:attr"`` entries, families, entry-point discovery and loud errors.

A registry maps names to objects of one type (architectures now; datasets, perturbations and executors use the
same class). Entries can be:

- eager: registered by a decorator when its module is imported;
- lazy: a ``"module:attr"`` (or ``"module"``) target imported on first use, so listing names imports nothing;
- a family: a prefix such as ``timm/`` whose members a resolver builds on demand (``timm/resnet18``).

Registering a name twice raises, naming both sources; an unknown name raises with did-you-mean suggestions.
Entry points in the registry's group (``fbench.architectures``) are read once, as lazy entries.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from fbench.contract import DEFAULT_SPEC, Architecture, ArchitectureSpec
from fbench.errors import DuplicateNameError, FbenchError, PluginError, UnknownNameError, close_matches

T = TypeVar("T")

FAMILY_SEPARATOR = "/"


class Family(Protocol[T]):  # type: ignore[misc]
    """Resolves the members of a name family (``prefix/member``)."""

    description: str

    def get(self, member: str) -> T: ...

    def members(self, pattern: str | None = None) -> list[str]: ...

    def suggest(self, member: str) -> list[str]: ...


@dataclass
class _Entry:
    source: str  # where the name came from, for collision and error messages
    value: Any = None
    target: str | None = None  # "module:attr" or "module" while the entry is lazy

    @property
    def is_lazy(self) -> bool:
        return self.target is not None


def import_target(target: str, what: str) -> Any:
    """Import ``"module:attr"`` (or ``"module"``) with an error that names the target."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except FbenchError:
        raise  # the plugin's own registration problem (a name taken twice, a bad spec) already names itself
    except ImportError as error:
        raise PluginError(
            f"cannot import {what} from {target!r}: {error}. Install the package that provides "
            f"{module_name!r}, or fix the name"
        ) from error
    except Exception as error:  # the plugin's own code raised while importing: contain it (--debug shows it)
        raise PluginError(
            f"{what} from {target!r} failed to import: {_describe(error)}. Fix the plugin, or uninstall the "
            f"package that provides {module_name!r} (--debug shows the traceback)"
        ) from error
    if not attr:
        return module
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise PluginError(f"cannot load {what}: module {module_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    return value


class Registry(Generic[T]):
    def __init__(self, kind: str, expected_type: type | None = None, entry_point_group: str | None = None):
        self.kind = kind
        self.expected_type = expected_type
        self.entry_point_group = entry_point_group
        self._entries: dict[str, _Entry] = {}
        self._families: dict[str, _Entry] = {}
        self._discovered = False
        self._lock = threading.RLock()

    # -- registration --------------------------------------------------------------------------------------
    def register(self, name: str, value: T, source: str) -> T:
        """Register an object. A lazy entry from the same module is replaced (that is its resolution)."""
        self._check_name(name)
        self._check_type(name, value)
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None and not (existing.is_lazy and _same_module(existing.target, source)):
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is registered twice: by {existing.source} and by {source}. "
                    "Rename one of them"
                )
            self._entries[name] = _Entry(source=source, value=value)
        return value

    def register_lazy(self, name: str, target: str, source: str | None = None) -> None:
        """Register ``"module:attr"`` (imported on first use) or ``"module"`` (whose import registers it)."""
        self._check_name(name)
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                if existing.target == target or (not existing.is_lazy and _same_module(target, existing.source)):
                    return
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is registered twice: by {existing.source} and by "
                    f"{source or target}. Rename one of them"
                )
            self._entries[name] = _Entry(source=source or target, target=target)

    def register_family(self, prefix: str, target: str, source: str | None = None) -> None:
        """Register a family resolver (a ``"module:attr"`` naming a ``Family``) for names ``prefix/...``."""
        with self._lock:
            if prefix in self._families:
                raise DuplicateNameError(
                    f"{self.kind} family {prefix!r} is registered twice: by {self._families[prefix].source} "
                    f"and by {source or target}"
                )
            self._families[prefix] = _Entry(source=source or target, target=target)

    # -- look-up ------------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self.discover()
        prefix, sep, member = name.partition(FAMILY_SEPARATOR)
        if sep and prefix in self._families:
            family = self._family(prefix)
            if not member:
                raise UnknownNameError(f"{self.kind} family {prefix!r} needs a member: {prefix}/NAME")
            return family.get(member)
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise UnknownNameError(self._unknown_message(name))
        if entry.is_lazy:
            self._resolve(name, entry)
            entry = self._entries[name]
        return entry.value

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def names(self) -> list[str]:
        """Registered names (lazy ones included, without importing them); families are not expanded."""
        self.discover()
        return sorted(self._entries)

    def families(self) -> dict[str, Family[T]]:
        self.discover()
        return {prefix: self._family(prefix) for prefix in sorted(self._families)}

    def source_of(self, name: str) -> str:
        self.discover()
        return self._entries[name].source

    # -- discovery ----------------------------------------------------------------------------------------
    def discover(self) -> None:
        """Read entry points of the registry's group, once, as lazy entries."""
        if self._discovered or self.entry_point_group is None:
            return
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
                dist = getattr(entry_point, "dist", None)
                owner = f"entry point {entry_point.name!r} of {dist.name if dist else 'an installed package'}"
                self.register_lazy(entry_point.name, entry_point.value, source=owner)

    # -- internals ----------------------------------------------------------------------------------------
    def _resolve(self, name: str, entry: _Entry) -> None:
        assert entry.target is not None
        value = import_target(entry.target, f"{self.kind} {name!r}")
        with self._lock:
            current = self._entries[name]
            if not current.is_lazy:  # the import registered it through the decorator
                return
            if ":" not in entry.target:
                raise PluginError(
                    f"importing {entry.target!r} did not register {self.kind} {name!r}; the module must "
                    f"decorate a factory with @register_{self.kind.replace(' ', '_')}({name!r})"
                )
            self._check_type(name, value)
            self._entries[name] = _Entry(source=entry.source, value=value)

    def _family(self, prefix: str) -> Family[T]:
        entry = self._families[prefix]
        if entry.is_lazy:
            assert entry.target is not None
            family = import_target(entry.target, f"{self.kind} family {prefix!r}")
            if isinstance(family, type):
                family = family()
            self._families[prefix] = _Entry(source=entry.source, value=family)
            return family
        return entry.value

    def _unknown_message(self, name: str) -> str:
        candidates = list(self._entries) + [f"{prefix}/" for prefix in self._families]
        matches = close_matches(name, candidates)
        if FAMILY_SEPARATOR not in name:  # 'resnet18' may mean 'timm/resnet18'
            for prefix in sorted(self._families):
                member = f"{prefix}{FAMILY_SEPARATOR}{name}"
                if member in self._family(prefix).suggest(name):
                    matches.insert(0, member)
        message = f"unknown {self.kind} {name!r}."
        if matches:
            message += f" Did you mean {' or '.join(repr(m) for m in matches)}?"
        message += f" Known: {', '.join(sorted(self._entries)) or 'none'}"
        if self._families:
            message += "; families: " + ", ".join(f"{p}/NAME" for p in sorted(self._families))
        return message + f". A plugin's {self.kind} appears after `--plugin pkg.module` or `pip install` of it"

    def _check_name(self, name: str) -> None:
        if not name or not isinstance(name, str) or name.strip() != name:
            raise PluginError(f"{self.kind} name {name!r} must be a non-empty string without spaces")
        prefix = name.partition(FAMILY_SEPARATOR)[0]
        if FAMILY_SEPARATOR in name and prefix in self._families:
            raise DuplicateNameError(f"{self.kind} name {name!r} collides with the family {prefix!r}")

    def _check_type(self, name: str, value: object) -> None:
        if self.expected_type is not None and not isinstance(value, self.expected_type):
            raise PluginError(
                f"{self.kind} {name!r} must be of type {self.expected_type.__name__}, got {type(value).__name__}; "
                f"decorate the factory with @register_{self.kind.replace(' ', '_')}"
            )


def _same_module(target: str | None, source: str) -> bool:
    if target is None:
        return False
    return target.partition(":")[0] == source.partition(":")[0]


ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture", expected_type=Architecture, entry_point_group="fbench.architectures"
)
ARCHITECTURES.register_lazy("lanmsff", "fbench.architectures.lanmsff:lanmsff", source="fbench built-in")
ARCHITECTURES.register_lazy("scan_cci", "fbench.architectures.scan_cci:scan_cci", source="fbench built-in")
ARCHITECTURES.register_family("timm", "fbench.architectures.timm_zoo:TimmFamily", source="fbench built-in")


def register_architecture(name: str, *, spec: ArchitectureSpec | None = None, description: str = ""
                          ) -> Callable[[Callable[..., Any]], Architecture]:
    """Decorate a model factory ``f(num_classes, *, option=default, ...)`` to register it under ``name``.

    Without ``spec`` the architecture takes fbench's defaults (``fbench.contract.DEFAULT_SPEC``: 3x224x224 input,
    ImageNet mean/std, 7 classes, the baseline recipe of the timm models). The decorated name becomes an
    ``Architecture`` (callable like the factory)."""

    def decorate(factory: Callable[..., Any]) -> Architecture:
        architecture = Architecture.from_factory(name, factory, DEFAULT_SPEC if spec is None else spec, description)
        return ARCHITECTURES.register(name, architecture, source=architecture.source)

    return decorate


def get_architecture(name: str) -> Architecture:
    return ARCHITECTURES.get(name)


def load_plugins(modules: Iterable[str]) -> None:
    """Import plugin modules (``--plugin pkg.module``, ``--plugin path/to/file.py`` or a suite's
    ``plugins:``); their decorators register their architectures."""
    for module in modules:
        if module.endswith(".py"):
            _import_file(Path(module))
        else:
            import_target(module, "plugin")


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise PluginError(f"plugin file {str(path)!r} does not exist; give a .py file or a module name")
    name = f"fbench_plugin_{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except FbenchError:
        del sys.modules[name]
        raise
    except Exception as error:  # the plugin's own code raised: one line naming it (--debug shows the traceback)
        del sys.modules[name]
        raise PluginError(
            f"plugin file {str(path)!r} failed to import: {_describe(error)}. Fix the plugin file "
            "(--debug shows the traceback)"
        ) from error


def _describe(error: BaseException) -> str:
    """``ValueError: message`` on one line (a SyntaxError with its line number)."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        text = f"{error.msg} (line {error.lineno})"
    else:
        text = str(error)
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# Datasets and perturbations: instances of fbench.data.adapter.DatasetAdapter and
# fbench.perturb.base.Perturbation. Built-ins are lazy module entries: importing the module registers them.
DATASETS: Registry[Any] = Registry("dataset", entry_point_group="fbench.datasets")
for _name, _module in (("kdef", "kdef"), ("rafdb", "rafdb"), ("fer2013", "fer2013"), ("ferplus", "ferplus"),
                       ("affectnet", "affectnet"), ("imagefolder", "imagefolder"), ("csv", "csv_manifest"),
                       ("jaffe", "jaffe"), ("ckplus", "ckplus"), ("rafd", "rafd")):
    DATASETS.register_lazy(_name, f"fbench.data.adapters.{_module}", source="fbench built-in")
# imagefolder/<name>: an image-folder dataset under a name of its own, so several can appear in one suite
DATASETS.register_family("imagefolder", "fbench.data.adapters.imagefolder:ImagefolderFamily", source="fbench built-in")

PERTURBATIONS: Registry[Any] = Registry("perturbation", entry_point_group="fbench.perturbations")
for _name, _module in (("occlusion", "occlusion"), ("mask", "mask")):
    PERTURBATIONS.register_lazy(_name, f"fbench.perturb.{_module}", source="fbench built-in")


def _instance_registrar(registry: Registry[Any], name: str, base: str) -> Callable[[type], type]:
    """A class decorator registering an instance of a subclass of ``base`` ("module:Class") in ``registry``."""

    def decorate(cls: type) -> type:
        expected = import_target(base, f"the {registry.kind} base class")
        if not (isinstance(cls, type) and issubclass(cls, expected)):
            raise PluginError(f"@register_{registry.kind}({name!r}) needs a subclass of {base.replace(':', '.')}")
        registry.register(name, cls(), source=f"{cls.__module__}:{cls.__qualname__}")
        return cls

    return decorate


def register_dataset(name: str) -> Callable[[type], type]:
    """Class decorator: register an instance of a ``DatasetAdapter`` subclass under ``name``."""
    return _instance_registrar(DATASETS, name, "fbench.data.adapter:DatasetAdapter")


def register_perturbation(name: str) -> Callable[[type], type]:
    """Class decorator: register an instance of a ``Perturbation`` subclass under ``name``."""
    return _instance_registrar(PERTURBATIONS, name, "fbench.perturb.base:Perturbation")


def get_dataset(name: str) -> Any:
    return DATASETS.get(name)


def is_dataset_name(name: str) -> bool:
    """Whether ``name`` names a dataset: a registered one (checked without importing it) or a member of a dataset
    family such as ``imagefolder/jaffe``."""
    if name in DATASETS.names():
        return True
    prefix, sep, _ = name.partition(FAMILY_SEPARATOR)
    return bool(sep) and prefix in DATASETS.families() and name in DATASETS


def dataset_choices() -> list[str]:
    """The registered dataset names and the family patterns (``imagefolder/<name>``), for messages."""
    return DATASETS.names() + [f"{prefix}{FAMILY_SEPARATOR}<name>" for prefix in DATASETS.families()]


def get_perturbation(name: str) -> Any:
    return PERTURBATIONS.get(name)
