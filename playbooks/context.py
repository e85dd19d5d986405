"""What a playbook sees of an incident, and the templates and conditions evaluated over it.

A playbook's conditions (``when``) and step parameters are Jinja2 expressions over one
name, ``incident``: the incident as :func:`detector.incidents.get_incident` returns it,
plus fields derived for containment (the grant behind a fan-out, a training run's
unsanitised inputs, the owners of the data, who is an agent). The same derivation
serves the store (:func:`incident_context`) and a playbook's inline tests
(:func:`context_from_mapping`), so a test exercises exactly what a real run sees.

Templates: a parameter that is exactly ``"{{ expression }}"`` takes the expression's
value as it is (a list stays a list); any other string with ``{{ }}`` renders to text.
Undefined names are errors, never silently empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from clickhouse_connect.driver.client import Client
from jinja2.sandbox import ImmutableSandboxedEnvironment

from detector.families import techniques
from detector.incidents import get_incident, grant_of
from detector.severity import SEVERITIES

# Sandboxed: a playbook may come from anyone who can write to a playbook folder, and a
# template must never reach Python's internals (``lipsum.__globals__['os']`` and the like
# raise SecurityError) nor change what it is given. Incident values are data to templates,
# never templates themselves: nothing from a log line is ever rendered.
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
# One {{ }} and nothing else ("{{ a }}: {{ b }}" is text, not one expression).
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)



class TemplateError(ValueError):
    """A condition or parameter template that does not compile or does not evaluate."""


def compile_check(text: str) -> None:
    """Raise :class:`TemplateError` when a condition or template does not compile."""
    try:
        match = _WHOLE_EXPRESSION.match(text)
        if match:
            _ENV.compile_expression(match.group(1))
        else:
            _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{text!r} does not compile: {exc.message}") from None


def evaluate_condition(expression: str, context: Mapping[str, Any]) -> bool:
    """The truth of a ``when`` expression (bare Jinja2, no braces) over ``incident``."""
    try:
        return bool(_ENV.compile_expression(expression, undefined_to_none=False)(incident=context))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"condition {expression!r} does not compile: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any evaluation error is the playbook's, reported as one
        raise TemplateError(f"condition {expression!r} failed: {exc}") from None


def render(value: Any, context: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Any:
    """Render parameter templates recursively (dicts, lists, strings); other values pass through."""
    if isinstance(value, dict):
        return {key: render(item, context, extra) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context, extra) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    names = {"incident": context, "extra": dict(extra or {})}
    try:
        whole = _WHOLE_EXPRESSION.match(value)
        if whole:
            result = _ENV.compile_expression(whole.group(1), undefined_to_none=False)(**names)
            _reject_undefined(result)
            return result
        return _ENV.from_string(value).render(**names)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {value!r} does not compile: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001
        raise TemplateError(f"template {value!r} failed: {exc}") from None


def _reject_undefined(value: Any) -> None:
    """A bare expression is not rendered, so an undefined name (even inside a list) fails here."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, dict):
        for item in value.values():
            _reject_undefined(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            _reject_undefined(item)


def derive(incident: dict[str, Any]) -> dict[str, Any]:
    """Add the containment fields every playbook may use (in place; returns the incident).

    Needs ``catalogue`` (resource -> ``{kind, sensitivity, categories, owner, sanitized}``)
    and ``principal_types`` (principal -> type) to be present, even if empty.
    """
    explanation = incident.get("explanation") or []
    incident.setdefault("features", {item["feature"]: item.get("value") for item in explanation
                                     if isinstance(item, dict) and "feature" in item})
    incident.setdefault("rule", next((item["rule"] for item in explanation
                                      if isinstance(item, dict) and "rule" in item), ""))
    entity, key = incident.get("entity", ""), incident.get("entity_key", "")
    resources, principals = list(incident.get("resources", [])), list(incident.get("principals", []))
    catalogue: dict[str, dict[str, Any]] = incident["catalogue"]
    incident["grant"] = grant_of(incident)
    incident["principal"] = key if entity == "principal" else (principals[0] if principals else "")
    run = key if entity == "training_run" else ""
    incident["training_run"] = run
    # A run's inputs are its other resources; one missing from the catalogue has unknown
    # provenance and counts as unsanitised.
    inputs = [r for r in resources if r != run] if run else []
    incident["unsanitised_inputs"] = [r for r in inputs if not catalogue.get(r, {}).get("sanitized", 0)]
    incident["owners"] = sorted({catalogue[r]["owner"] for r in resources if catalogue.get(r, {}).get("owner")})
    incident["categories"] = sorted({c for r in resources for c in catalogue.get(r, {}).get("categories", [])})
    incident["kinds"] = sorted({catalogue[r]["kind"] for r in resources if r in catalogue})
    incident["secrets"] = [r for r in resources if catalogue.get(r, {}).get("kind") == "secret"]
    types = incident["principal_types"]
    incident["agents"] = [p for p in principals if types.get(p) == "agent"]
    incident["principal_type"] = types.get(incident["principal"], "")
    incident.setdefault("techniques", techniques(incident.get("detector", "")))
    return incident


def context_from_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """An incident context from a plain mapping (a playbook's inline test), with defaults.

    Raises
    ------
    ValueError
        No ``detector``, or an unknown ``severity``.
    """
    if not data.get("detector"):
        raise ValueError("a test incident needs a detector")
    severity = data.get("severity", "SEV3")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    incident: dict[str, Any] = {
        "id": 1, "title": "", "status": "open", "score": 1.0, "entity": "principal", "entity_key": "",
        "principals": [], "resources": [], "explanation": [], "first_seen": now, "last_seen": now,
        "detected_at": now, "group_id": 1, "catalogue": {}, "principal_types": {}, "assignee": None,
    }
    incident.update({key: value for key, value in data.items()})
    incident["severity"] = severity
    if incident["entity"] == "principal" and not incident["entity_key"] and incident["principals"]:
        incident["entity_key"] = incident["principals"][0]
    for resource, entry in list(incident["catalogue"].items()):
        incident["catalogue"][resource] = {"kind": "dataset", "sensitivity": "internal", "categories": [],
                                           "owner": "", "sanitized": 1, **(entry or {})}
    return derive(incident)


def incident_context(client: Client, incident_id: int) -> dict[str, Any] | None:
    """The context of a stored incident (``None`` if there is no such incident)."""
    incident = get_incident(client, incident_id)
    if incident is None:
        return None
    catalogue: dict[str, dict[str, Any]] = {}
    if incident["resources"]:
        result = client.query(
            "SELECT resource, argMax(kind, updated_at), argMax(sensitivity, updated_at),"
            " argMax(categories, updated_at), argMax(owner, updated_at), argMax(sanitized, updated_at)"
            " FROM resources WHERE resource IN {r:Array(String)} GROUP BY resource",
            parameters={"r": incident["resources"]})
        for resource, kind, sensitivity, categories, owner, sanitized in result.result_rows:
            catalogue[resource] = {"kind": kind, "sensitivity": sensitivity, "categories": list(categories),
                                   "owner": owner, "sanitized": int(sanitized)}
    types: dict[str, str] = {}
    if incident["principals"]:
        result = client.query(
            "SELECT principal, argMax(principal_type, updated_at) FROM principals"
            " WHERE principal IN {p:Array(String)} GROUP BY principal",
            parameters={"p": incident["principals"]})
        types = {principal: kind for principal, kind in result.result_rows}
    incident["catalogue"], incident["principal_types"] = catalogue, types
    return derive(incident)
