"""A small evaluator of the Logic Apps workflow definition language, for the sample's expressions.

Enough of the language (https://learn.microsoft.com/azure/logic-apps/workflow-definition-language-functions-reference)
to run the expressions ``infra/logicapp/workflow.json`` uses, exactly as written there: ``@``
expressions and ``@{...}`` interpolation in strings; function calls; single-quoted string
literals (``''`` escapes a quote), numbers, ``true``/``false``/``null``; property access
``['name']`` and its null-safe form ``?['name']``; the functions ``not``, ``and``, ``or``,
``equals``, ``contains``, ``coalesce``, ``json``, ``union``, ``createArray``, ``string``,
``encodeUriComponent``, ``parameters``, ``triggerBody``, ``body`` and ``listCallbackUrl``; and
the designer's structured conditions (``{"and": [{"not": {"contains": [a, b]}}]}``). An
expression using anything else fails loudly rather than evaluating to a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>\?\[|[()\[\],]))"
)


@dataclass
class Run:
    """What an expression can see: the workflow's parameters, the trigger's body, the bodies
    of the actions that ran, and the trigger's callback URL."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    trigger_body: Any = None
    bodies: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str = "https://prod-00.westeurope.logic.azure.com/workflows/x/triggers/t"

    def value(self, text: Any) -> Any:
        """A definition's value: strings evaluated (``@expr`` whole, ``@{...}`` inside),
        objects and arrays value by value."""
        if isinstance(text, dict):
            return {k: self.value(v) for k, v in text.items()}
        if isinstance(text, list):
            return [self.value(v) for v in text]
        if not isinstance(text, str):
            return text
        if text.startswith("@@"):
            return text[1:]
        if text.startswith("@") and not text.startswith("@{"):
            return self.expression(text[1:])
        return re.sub(r"@\{([^{}]*)\}", lambda m: _text(self.expression(m.group(1))), text)

    def condition(self, spec: Any) -> bool:
        """A structured condition (``If``'s ``expression``), or an ``@`` expression."""
        if isinstance(spec, str):
            return bool(self.value(spec))
        ((op, args),) = spec.items()
        if op == "and":
            return all(self.condition(a) for a in args)
        if op == "or":
            return any(self.condition(a) for a in args)
        if op == "not":
            return not self.condition(args)
        if op == "contains":
            return _contains(self.value(args[0]), self.value(args[1]))
        if op == "equals":
            return bool(self.value(args[0]) == self.value(args[1]))
        raise ValueError(f"condition '{op}' is not supported here")

    def expression(self, text: str) -> Any:
        parser = _Parser(_tokens(text), self)
        result = parser.expr()
        if parser.tokens:
            raise ValueError(f"unexpected {parser.tokens[0][1]!r} in {text!r}")
        return result


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], run: Run) -> None:
        self.tokens = tokens
        self.run = run

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if not self.tokens:
            raise ValueError("the expression ends too early")
        token = self.tokens.pop(0)
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, found {token[1]!r}")
        return token

    def expr(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            value: Any = text[1:-1].replace("''", "'")
        elif kind == "number":
            value = float(text) if "." in text else int(text)
        elif kind == "name" and text in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[text]
        elif kind == "name":
            self.take("(")
            args: list[Any] = []
            if self.tokens and self.tokens[0][1] != ")":
                args.append(self.expr())
                while self.tokens and self.tokens[0][1] == ",":
                    self.take(",")
                    args.append(self.expr())
            self.take(")")
            value = self.call(text, args)
        else:
            raise ValueError(f"unexpected {text!r}")
        while self.tokens and self.tokens[0][1] in ("[", "?["):
            safe = self.take()[1] == "?["
            key = self.expr()
            self.take("]")
            if value is None and safe:
                continue
            value = value[key] if not safe else _get(value, key)
        return value

    def call(self, name: str, args: list[Any]) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "not": lambda a: not a,
            "and": lambda *a: all(a),
            "or": lambda *a: any(a),
            "equals": lambda a, b: a == b,
            "contains": _contains,
            "coalesce": lambda *a: next((v for v in a if v is not None), None),
            "json": json.loads,
            "union": _union,
            "createArray": lambda *a: list(a),
            "string": _text,
            "encodeUriComponent": lambda a: quote(_text(a), safe=""),
            "parameters": lambda n: self.run.parameters[n],
            "triggerBody": lambda: self.run.trigger_body,
            "body": lambda n: self.run.bodies[n],
            "listCallbackUrl": lambda: self.run.callback_url,
        }
        if name not in functions:
            raise ValueError(f"function {name}() is not supported here")
        return functions[name](*args)


def _get(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return None


def _contains(collection: Any, item: Any) -> bool:
    if isinstance(collection, Mapping):
        return item in collection
    if isinstance(collection, str):
        return isinstance(item, str) and item in collection
    return item in list(collection or [])


def _union(*collections: Any) -> list[Any]:
    out: list[Any] = []
    for collection in collections:
        for item in collection:
            if item not in out:
                out.append(item)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
