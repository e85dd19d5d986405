"""A rule's ``condition:``: a small, restricted boolean expression over one feature row.

``bytes_exported > 1e9 and new_export_destinations > 0`` is parsed with Python's own
parser (:mod:`ast`) and then only a whitelist of node kinds is accepted:

- names (a registry feature of the rule's entity, or a declared parameter), and
  constants (numbers, strings, ``True``/``False``/``None``);
- ``and``, ``or``, ``not``; comparisons ``< <= > >= == !=`` (chained too), and
  ``in``/``not in`` against a literal tuple or list;
- arithmetic ``+ - * / // %`` and unary ``-``/``+`` on numbers only;
- ``a if c else b``.

There is no attribute access, subscript, call, lambda, comprehension or ``**``, so no
object of the Python (or a template engine's) object model is reachable, whatever the
author writes: that is why conditions use this evaluator rather than the Jinja2
sandbox, which the severity ``when:`` cases keep (a sandbox blocks what it knows to be
unsafe; this allows only what it knows to be safe). The names are known before any
data is read, so an unknown feature is a load problem, not a run-time surprise.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from numbers import Number
from typing import Any

#: The longest condition accepted (a rule condition is a line, not a program).
MAX_LENGTH = 2000

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


class ConditionError(ValueError):
    """A condition that is not in the allowed language, or that fails on a row."""


def _check(node: ast.AST, names: set[str]) -> None:
    """Refuse every node kind outside the whitelist; collect the names used."""
    if isinstance(node, ast.Expression):
        _check(node.body, names)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, names)
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ConditionError("only < <= > >= == != in and not in compare")
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.Tuple | ast.List):
                raise ConditionError("`in` takes a literal list: x in ('a', 'b')")
        _check(node.left, names)
        for right in node.comparators:
            _check(right, names)
    elif isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, names)
    elif isinstance(node, ast.BinOp | ast.UnaryOp):
        raise ConditionError(f"operator {type(node.op).__name__} is not allowed (+ - * / // % and not only)")
    elif isinstance(node, ast.Tuple | ast.List):
        for element in node.elts:
            if not isinstance(element, ast.Constant):
                raise ConditionError("a list in a condition holds constants only")
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise ConditionError(f"constant {node.value!r} is not allowed")
    else:
        raise ConditionError(f"{type(node).__name__.lower()} is not allowed in a condition (names, numbers, "
                             f"strings, comparisons, and/or/not, + - * / // % only)")


def parse(text: str) -> tuple[ast.Expression, tuple[str, ...]]:
    """Parse and check a condition; the tree and the names it uses, in first-use order.

    Raises
    ------
    ConditionError
        A syntax error, or a construct outside the allowed language.
    """
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"condition {text!r} does not parse: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, names)
    ordered = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)), key=lambda n: (n.lineno, n.col_offset))
    return tree, tuple(dict.fromkeys(n.id for n in ordered))


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, Number):
        raise ConditionError(f"arithmetic on a non-number: {value!r}")
    return value


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, names)
    if isinstance(node, ast.BoolOp):
        result: Any = isinstance(node.op, ast.And)
        for value in node.values:
            result = _eval(value, names)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names)
        return _UNARY[type(node.op)](operand if isinstance(node.op, ast.Not) else _number(operand))
    if isinstance(node, ast.BinOp):
        left, right = _number(_eval(node.left, names)), _number(_eval(node.right, names))
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, names) else node.orelse, names)
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_eval(element, names) for element in node.elts)
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ConditionError(f"{node.id!r} is not defined")
        return names[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    raise ConditionError(f"{type(node).__name__} is not allowed")  # parse() refused it already


def evaluate(tree: ast.Expression, names: Mapping[str, Any]) -> bool:
    """Whether the condition holds for ``names`` (a feature row and the parameters).

    Raises
    ------
    ConditionError
        A name is missing, arithmetic on a non-number, a division by zero, a comparison
        of values that do not compare.
    """
    try:
        return bool(_eval(tree, names))
    except ConditionError:
        raise
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ConditionError(f"{type(exc).__name__}: {exc}") from None
