"""Reading a suite: a file (or a built-in suite by name) -> YAML -> ``--set`` overrides -> a validated Suite.

A suite is YAML read with ``yaml.safe_load`` (plain data only: a ``!!python/...`` tag is an error) and checked
in two passes whose problems are reported together: the pydantic models of :mod:`fbench.suite.schema` (types,
ranges, unknown keys), then the semantic checks of :mod:`fbench.suite.checks` (names against the registries).
Every problem reads ``FILE: key.path: problem (did you mean 'x'?)``; :class:`SuiteError` carries them all.
Tuned parameters (the suite's ``tuned_from:``, then ``--params``) are applied last.

A suite argument that is not an existing file, has no folder in it and no ``.yaml``/``.yml`` suffix names a
built-in suite (``multiview``: the ``multiview.yaml`` shipped in the package ``fbench.suites``).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fbench.errors import FbenchError, did_you_mean
from fbench.suite.checks import semantic_problems
from fbench.suite.problems import (
    Problem,
    SuiteError,
    document_order,
    format_problems,
    is_list_at,
    path_text,
    pydantic_problems,
    unknown_name,
)
from fbench.suite.schema import ArchitectureConfig, Suite
from fbench.suite.tuned import apply_tuned

BUILTIN_SUITES_PACKAGE = "fbench.suites"
SUITE_SUFFIXES = (".yaml", ".yml")
# A suite is a page of YAML; these caps keep a hostile file (a "billion laughs" of nested aliases expands a few
# hundred bytes into billions of values) from taking the machine's memory.
MAX_SUITE_BYTES = 1_000_000
MAX_SUITE_VALUES = 100_000  # YAML nodes after aliases are expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


def builtin_suites() -> list[str]:
    """The names of the suites shipped with fbench (``multiview``, ``smoke``, ...), sorted."""
    folder = importlib.resources.files(BUILTIN_SUITES_PACKAGE)
    return sorted(item.name[:-len(".yaml")] for item in folder.iterdir()
                  if item.name.endswith(".yaml") and item.is_file())


def suite_path(suite: str | Path) -> Path:
    """The file a suite argument names: the path itself, or a built-in suite when the argument is a bare name
    (not an existing file, no folder, no ``.yaml``/``.yml`` suffix) or ``suites/<name>.yaml`` where no such file
    is (the built-in's own path, from another folder). Raises SuiteError for an unknown name."""
    path = Path(suite)
    text = str(suite)
    shipped = importlib.resources.files(BUILTIN_SUITES_PACKAGE) / path.name
    if not path.exists() and path.parent == Path("suites") and shipped.is_file():
        return Path(str(shipped))  # suites/<name>.yaml as the README writes it, run from any folder
    if path.exists() or "/" in text or "\\" in text or path.suffix.lower() in SUITE_SUFFIXES:
        return path
    resource = importlib.resources.files(BUILTIN_SUITES_PACKAGE) / f"{text}.yaml"
    if resource.is_file():
        return Path(str(resource))
    names = builtin_suites()
    raise SuiteError([f"{text}: no such suite file, and no built-in suite of that name{did_you_mean(text, names)}; "
                      f"built-in suites: {', '.join(names)}"])


def read_yaml(path: Path, source: str | None = None) -> Any:
    """The plain data in a suite file; raises SuiteError naming the file (as ``source``), line and column."""
    source = source or str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_SUITE_BYTES + 1)
    except OSError as error:
        raise SuiteError([f"{source}: cannot read the suite file: {error.strerror or error}"]) from None
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError([f"{source}: the suite file is larger than {MAX_SUITE_BYTES:,} bytes; a suite is a page of "
                          "YAML (is this the right file?)"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SuiteError([f"{source}: the suite file is not UTF-8 text (byte {error.start}); save it as UTF-8"]
                         ) from None
    try:
        return _load_checked(text, source)
    except RecursionError:
        raise SuiteError([f"{source}: YAML error: the document is nested too deeply to be a suite"]) from None
    except yaml.constructor.ConstructorError as error:
        where = _mark(source, error.problem_mark or error.context_mark)
        problem = str(error.problem)
        if "constructor for the tag" in problem:
            problem += ("; suites are plain data (read with yaml.safe_load), so tags such as !!python/object "
                        "are not allowed")
        detail = f"{error.context}: {problem}" if error.context else problem
        raise SuiteError([f"{where}: YAML error: {detail}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise SuiteError([f"{_mark(source, mark)}: YAML syntax error: {detail}"]) from None


class SuiteLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only) whose document is checked before it is built: see
    :func:`_load_checked`."""


def _load_checked(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys (the last would silently win) and documents whose aliases
    expand past ``MAX_SUITE_VALUES`` nodes; both are checked on the composed node graph, before anything is built."""
    loader = SuiteLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[str] = []
        size = _expanded_size(node, {}, set(), problems, source)
        if problems:
            raise SuiteError(problems)
        if size > MAX_SUITE_VALUES:
            raise SuiteError([f"{source}: the suite expands to more than {MAX_SUITE_VALUES:,} YAML values through "
                              "its aliases (*name); a suite needs far fewer: write the values out, or use fewer "
                              "nested aliases"])
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], problems: list[str],
                   source: str) -> int:
    """How many nodes ``node`` stands for once aliases are expanded (an alias is the anchored node again, so a
    "billion laughs" counts its billion); records duplicate keys in ``problems``. Stops counting past the cap."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_nodes:
        raise SuiteError([f"{_mark(source, node.start_mark)}: YAML error: an alias refers to the value that "
                          "contains it (a recursive structure); a suite is a tree of plain values"])
    open_nodes.add(id(node))
    total = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                key = (key_node.tag, key_node.value)
                if key in seen:
                    problems.append(f"{_mark(source, key_node.start_mark)}: duplicate key {key_node.value!r} (first "
                                    f"on line {seen[key].line + 1}); YAML would silently keep the last one: remove "
                                    "or rename one of them")
                else:
                    seen[key] = key_node.start_mark
            for child in (key_node, value_node):
                total += _expanded_size(child, sizes, open_nodes, problems, source)
                if total > MAX_SUITE_VALUES:
                    break
            if total > MAX_SUITE_VALUES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, open_nodes, problems, source)
            if total > MAX_SUITE_VALUES:
                break
    open_nodes.discard(id(node))
    sizes[id(node)] = total
    return total


def _mark(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``"architectures.0.recipe.epochs=5"`` -> ``(["architectures", 0, "recipe", "epochs"], 5)``; the value is
    read as YAML (``true``, ``0.5``, ``[0, 1]``, ``null``, text)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise FbenchError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set architectures.0.recipe.epochs=5")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise FbenchError(f"--set {item!r}: the value is not valid YAML ({getattr(error, 'problem', error)})"
                          ) from None
    path: list[str | int] = [int(part) if _is_index(part) else part.strip() for part in key.split(".")]
    return path, value


def _is_index(part: str) -> bool:
    text = part.strip()
    return text.lstrip("-").isdigit()


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Apply one ``--set KEY.PATH=VALUE`` to the raw suite dict in place; returns the dotted key path.
    Missing mappings on the way are created; list indices must exist."""
    path, value = parse_override(item)
    node: Any = raw
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = path_text(tuple(path[:depth])) or "the suite"
        if isinstance(node, list):
            if not isinstance(part, int):
                raise FbenchError(f"--set {item!r}: {where} is a list; index it with a number (0..{len(node) - 1})")
            if not -len(node) <= part < len(node):
                raise FbenchError(f"--set {item!r}: {where} has {len(node)} item(s); index {part} is out of range")
        elif isinstance(node, dict):
            if isinstance(part, int) and part not in node:
                part = str(part)
            if not last and not isinstance(node.get(part), (dict, list)):
                here = path_text(tuple(path[:depth + 1]))
                if node.get(part) is not None:
                    raise FbenchError(f"--set {item!r}: {here} is {type(node[part]).__name__}, not a mapping or "
                                      f"list")
                if isinstance(path[depth + 1], int) or is_list_at(Suite, tuple(path[:depth + 1])):
                    raise FbenchError(f"--set {item!r}: {here} is not in the file, so it has no items to index; "
                                      f"set the whole list, e.g. --set {here}=[...]")
                node[part] = {}
        else:
            raise FbenchError(f"--set {item!r}: {where} is {type(node).__name__}, not a mapping or list")
        if last:
            node[part] = value
        else:
            node = node[part]
    return path_text(tuple(path))


def suite_from_dict(raw: Any, source: str = "<suite>", overrides: Sequence[str] = (),
                    notes: Mapping[str, str] | None = None) -> Suite:
    """Validate raw suite data (after applying ``--set`` overrides); raises SuiteError listing every problem."""
    if not isinstance(raw, dict):
        what = "empty" if raw is None else f"a {type(raw).__name__}"
        raise SuiteError([f"{source}: a suite is a mapping of keys (name:, architectures:, ...); this one is {what}"])
    notes = dict(notes or {})
    problems: list[str] = []
    for item in overrides:
        try:
            notes[apply_override(raw, item)] = f"--set {item}"
        except FbenchError as error:
            problems.append(f"{source}: {error}")
    suite: Suite | None = None
    found: list[Problem] = []
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as error:
        found += pydantic_problems(error, Suite)
    found += semantic_problems(raw)
    problems += format_problems(source, document_order(found, raw), notes)
    if problems or suite is None:
        raise SuiteError(problems)
    suite.set_source(source)
    return suite


def load_suite(path: str | Path, overrides: Sequence[str] = (), budget: str | None = None,
               only: Sequence[str] | None = None, data: Mapping[str, str] | None = None,
               params: Sequence[str | Path] = ()) -> Suite:
    """Read, override and validate a suite file (or a built-in suite by name: ``load_suite("multiview")``).

    ``overrides`` are ``--set KEY.PATH=VALUE`` items (applied to the raw data before validation; list indices as
    numbers), ``budget`` replaces the suite's budget, ``data`` (``--data NAME=PATH``) merges into ``data:`` and
    ``only`` keeps the architectures (or single variants) with those names or labels. ``params`` are tuning
    results (``--params best.yaml``), applied after the suite's own ``tuned_from:`` files. Raises SuiteError.
    """
    file = suite_path(path)
    source = str(path) if Path(path) == file else str(file)  # a path as the user wrote it
    raw = read_yaml(file, source)
    notes: dict[str, str] = {}
    if isinstance(raw, dict):
        if budget is not None:
            raw["budget"] = budget
            notes["budget"] = f"--budget {budget}"
        if data:
            if not isinstance(raw.get("data"), dict):
                raw["data"] = {} if raw.get("data") is None else raw["data"]
            if isinstance(raw["data"], dict):
                raw["data"].update(data)
                notes.update({f"data.{name}": f"--data {name}={value}" for name, value in data.items()})
    suite = suite_from_dict(raw, source, overrides, notes)
    suite.set_data_flags(data or {})
    suite = _apply_tuned(suite, file, params)
    return select_architectures(suite, only) if only else suite


def _apply_tuned(suite: Suite, path: Path, params: Sequence[str | Path]) -> Suite:
    """The suite with its ``tuned_from:`` files (relative to the suite file) and then ``params`` applied."""
    listed = [suite.tuned_from] if isinstance(suite.tuned_from, str) else list(suite.tuned_from or [])
    files = [path.parent / Path(item).expanduser() for item in listed] + [Path(p) for p in params]
    if not files:
        return suite
    return apply_tuned(suite, files)


def select_architectures(suite: Suite, only: Sequence[str]) -> Suite:
    """The suite with only the architectures named (by name or label) or the variants labelled in ``only``."""
    wanted = list(dict.fromkeys(only))
    names = {a.name for a in suite.architectures} | {a.base_label for a in suite.architectures}
    labels = {entry.label for entry in suite.architecture_entries()}
    known = names | labels
    unknown = [w for w in wanted if w not in known]
    if unknown:
        source = suite.source or "<suite>"
        raise SuiteError([f"{source}: --only: {unknown_name('architecture name or label', w, known)}" for w in unknown])
    kept: list[ArchitectureConfig] = []
    for arch in suite.architectures:
        if arch.name in wanted or arch.base_label in wanted:
            kept.append(arch)
            continue
        variants = [v for v in arch.variants if arch.variant_label(v) in wanted]
        if variants:
            kept.append(arch.model_copy(update={"variants": variants}))
    selected = suite.model_copy(update={"architectures": kept})
    selected.set_source(suite.source)
    return selected


def validate_suite_file(path: str | Path, overrides: Sequence[str] = (), budget: str | None = None,
                        only: Sequence[str] | None = None, data: Mapping[str, str] | None = None) -> list[str]:
    """Every problem with a suite file or built-in suite (empty: valid), without raising; for ``fbench
    validate``."""
    try:
        load_suite(path, overrides, budget=budget, only=only, data=data)
    except SuiteError as error:
        return error.problems
    except FbenchError as error:
        return [str(error)]
    return []
