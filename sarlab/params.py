"""Notebook parameters: what a notebook's ``parameters`` cell declares, and whether a value fits.

The first cell tagged ``parameters`` holds typed literals, one comment each::

    smoke: bool = False  # tiny sizes, for tests
    n_looks: float = 4.4  # equivalent number of looks
    bands: list[str] = ["VV", "VH"]  # polarisations, in order

It is parsed with ``ast`` rather than papermill's regex inspector, which drops hints such as
``int | None`` or ``Literal["a", "b"]`` and splits strings containing ``#``. Values are
checked against the hint (or, without one, against the type of the literal default) so a
pipeline typo fails before any kernel starts.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from sarlab.errors import PipelineError

__all__ = ["NotebookParameter", "conform", "notebook_parameters", "parse_overrides"]

_NO_LITERAL = object()


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment in a notebook's ``parameters`` cell."""

    name: str
    type_hint: str | None
    default_source: str
    help: str = ""
    default: Any = field(default=_NO_LITERAL, repr=False)

    @property
    def has_literal_default(self) -> bool:
        return self.default is not _NO_LITERAL


def notebook_parameters(path: str | Path) -> dict[str, NotebookParameter]:
    """Parameters declared in the first cell tagged ``parameters`` (empty if there is none).

    Parsed with ``ast`` rather than papermill's regex inspector, which drops hints such as
    ``int | None`` or ``Literal["a", "b"]`` and splits strings that contain ``#``.
    """
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        raise PipelineError(path, f"cannot read notebook: {error}") from error
    cell = next(
        (c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if cell is None:
        return {}
    source = cell.source
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise PipelineError(path, f"parameters cell is not valid Python: {error}") from error
    comments = _line_comments(source)
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets, hint, value = [node.target.id], ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            targets, hint, value = [t.id for t in node.targets], None, node.value
        else:
            continue
        default_source = "" if value is None else ast.unparse(value)
        try:
            default = _NO_LITERAL if value is None else ast.literal_eval(value)
        except ValueError:
            default = _NO_LITERAL
        help_text = comments.get(node.end_lineno or node.lineno, "")
        for name in targets:
            found[name] = NotebookParameter(name, hint, default_source, help_text, default)
    return found


def _line_comments(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def conform(value: Any, parameter: NotebookParameter) -> Any:
    """``value`` checked against the parameter's type hint (or its literal default's type).

    Returns the value to inject (an int given for a float hint becomes a float); raises
    TypeError saying what was expected when it does not fit.
    """
    if parameter.type_hint is not None:
        try:
            node = ast.parse(parameter.type_hint, mode="eval").body
        except SyntaxError:
            return value
        expected = parameter.type_hint
    elif parameter.has_literal_default and parameter.default is not None:
        node = ast.Name(type(parameter.default).__name__)
        expected = f"{type(parameter.default).__name__} (the type of its default)"
    else:
        return value
    ok, converted = _fits(value, node)
    if not ok:
        raise TypeError(f"expected {expected}, got {value!r} ({type(value).__name__})")
    return converted


def _fits(value: Any, node: ast.expr) -> tuple[bool, Any]:
    """(fits, converted) for a value and an annotation AST; unknown annotations accept all."""
    if isinstance(node, ast.Constant):
        if node.value is None:
            return value is None, value
        if isinstance(node.value, str):
            try:
                return _fits(value, ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return True, value
        return True, value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _fits_any(value, [node.left, node.right])
    name, args = _annotation_name(node)
    if name == "Optional":
        return _fits_any(value, [ast.Constant(None), *args])
    if name == "Union":
        return _fits_any(value, args)
    if name == "Literal":
        try:
            options = [ast.literal_eval(arg) for arg in args]
        except ValueError:
            return True, value
        return any(type(value) is type(o) and value == o for o in options), value
    simple = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "None": lambda v: v is None,
        "NoneType": lambda v: v is None,
    }
    if name in simple:
        return simple[name](value), value
    if name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if name in {"list", "tuple", "set", "Sequence", "List", "Tuple"}:
        if not isinstance(value, list):
            return False, value
        if not args or (name in {"tuple", "Tuple"} and not _is_homogeneous_tuple(args)):
            return True, value
        converted = []
        for item in value:
            ok, item = _fits(item, args[0])
            if not ok:
                return False, value
            converted.append(item)
        return True, converted
    if name in {"dict", "Mapping", "Dict"}:
        if not isinstance(value, dict):
            return False, value
        if len(args) != 2:
            return True, value
        converted_dict = {}
        for key, item in value.items():
            key_ok, key = _fits(key, args[0])
            item_ok, item = _fits(item, args[1])
            if not (key_ok and item_ok):
                return False, value
            converted_dict[key] = item
        return True, converted_dict
    return True, value


def _fits_any(value: Any, options: list[ast.expr]) -> tuple[bool, Any]:
    for option in options:
        ok, converted = _fits(value, option)
        if ok:
            return True, converted
    return False, value


def _is_homogeneous_tuple(args: list[ast.expr]) -> bool:
    return len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis


def _annotation_name(node: ast.expr) -> tuple[str, list[ast.expr]]:
    args: list[ast.expr] = []
    if isinstance(node, ast.Subscript):
        inner = node.slice
        args = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr, args
    if isinstance(node, ast.Name):
        return node.id, args
    return "", args


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["step.param=value", "param=value"]`` -> dict; values read as YAML (``true``, ``3``)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PipelineError(None, f"--set {item!r}: expected STEP.PARAM=VALUE or PARAM=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise PipelineError(
                None, f"--set {item!r}: value is not valid YAML: {error}"
            ) from error
    return overrides
