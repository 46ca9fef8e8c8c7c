"""Power Platform's rules for a custom connector's OpenAPI document, in our own words. Pure.

``problems(document)`` lists every place where the document breaks a rule, each as
``<JSON path>: <what is wrong>``. Two sources, both public:

- **The swagger schema** Power Platform validates connectors against
  (microsoft/PowerPlatformConnectors ``schemas/apiDefinition.swagger.schema.json``): which keys
  each object may hold (``additionalProperties: false`` everywhere, ``x-`` extensions that do not
  start with ``x-ms-`` allowed), so an ``x-ms-*`` extension is valid only where the schema lists it:
  ``x-ms-notification-content`` on a path item (never an operation), ``x-ms-pageable`` with
  ``nextLinkName`` and nothing else, ``x-ms-visibility`` one of important/advanced/internal,
  ``x-ms-trigger`` batch/single, the formats and header types it enumerates.
- **The certification checklist and string guidance**
  (https://learn.microsoft.com/connectors/custom-connectors/coding-standards,
  https://learn.microsoft.com/connectors/custom-connectors/connector-string-guidance,
  https://learn.microsoft.com/connectors/custom-connectors/certification-submission): a summary
  and a description on every operation; operation summaries in sentence case, at most 80
  characters, no ``/``, ending in a letter or digit; trigger summaries "When ..." and
  descriptions "This operation triggers when ..."; ``x-ms-summary`` on every parameter and body
  property as a title (Title Case, at most 80 characters, a human name rather than the raw
  parameter name) with a description; response properties titled too; success responses
  declared, no ``default`` response; ``info.contact``; a title of at most 30 characters without
  the word "API" or a Power Platform product's name.

Rules of our own, for a connector that works: one security definition (a connector's Security
tab holds one authentication type, so the document declares the one this deployment admits);
every 202 declares ``Location`` and ``Retry-After``; array filters enumerate their values
(``items.enum``); a required parameter is
never hidden (``internal``) unless it has a default or is the platform's callback URL; the
pageable listing's ``nextLinkName`` is a property of its 200 answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

#: ``x-`` extensions that are not Microsoft's are allowed on every object of the schema
_VENDOR = re.compile(r"^x-(?!ms-)")

ROOT_KEYS = frozenset(
    {
        "swagger",
        "info",
        "host",
        "basePath",
        "schemes",
        "consumes",
        "produces",
        "paths",
        "definitions",
        "parameters",
        "responses",
        "security",
        "securityDefinitions",
        "tags",
        "externalDocs",
        "x-ms-capabilities",
        "x-ms-connector-metadata",
        "x-ms-docs",
    }
)
INFO_KEYS = frozenset(
    {
        "title",
        "version",
        "description",
        "termsOfService",
        "contact",
        "license",
        "x-ms-deployment-version",
        "x-ms-api-annotation",
    }
)
CONTACT_KEYS = frozenset({"name", "url", "email"})
TAG_KEYS = frozenset({"name", "description", "externalDocs"})
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
PATH_ITEM_KEYS = frozenset({"$ref", "parameters", "x-ms-notification-content", *METHODS})
OPERATION_KEYS = frozenset(
    {
        "tags",
        "summary",
        "description",
        "externalDocs",
        "operationId",
        "produces",
        "consumes",
        "parameters",
        "responses",
        "schemes",
        "deprecated",
        "security",
        "x-ms-api-annotation",
        "x-ms-capabilities",
        "x-ms-no-generic-test",
        "x-ms-operation-context",
        "x-ms-pageable",
        "x-ms-safe-operation",
        "x-ms-summary",
        "x-ms-trigger",
        "x-ms-trigger-hint",
        "x-ms-trigger-metadata",
        "x-ms-notification",
        "x-ms-visibility",
    }
)
RESPONSE_KEYS = frozenset({"description", "schema", "headers", "examples", "x-ms-summary"})
_LIMITS = frozenset(
    {
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "enum",
        "multipleOf",
    }
)
PRIMITIVE_ITEMS_KEYS = frozenset({"type", "format", "items", "collectionFormat", *_LIMITS})
HEADER_KEYS = PRIMITIVE_ITEMS_KEYS | {"description", "x-ms-summary", "x-ms-visibility"}
_PARAMETER_COMMON = PRIMITIVE_ITEMS_KEYS | {
    "required",
    "in",
    "description",
    "name",
    "x-ms-dynamic-list",
    "x-ms-dynamic-values",
    "x-ms-enum-values",
    "x-ms-localizeDefaultValue",
    "x-ms-parameter-location",
    "x-ms-summary",
    "x-ms-test-value",
    "x-ms-trigger-value",
    "x-ms-visibility",
}
PARAMETER_KEYS: Mapping[str, frozenset[str]] = {
    "header": frozenset(_PARAMETER_COMMON),
    "query": frozenset(
        _PARAMETER_COMMON | {"allowEmptyValue", "x-ms-dynamic-tree", "x-ms-url-encoding"}
    ),
    "path": frozenset(
        _PARAMETER_COMMON | {"x-ms-dynamic-tree", "x-ms-skip-url-encoding", "x-ms-url-encoding"}
    ),
    "formData": frozenset(_PARAMETER_COMMON | {"allowEmptyValue"}),
    "body": frozenset(
        {
            "description",
            "name",
            "in",
            "required",
            "schema",
            "x-ms-dynamic-list",
            "x-ms-dynamic-values",
            "x-ms-summary",
            "x-ms-test-value",
            "x-ms-visibility",
        }
    ),
}
SCHEMA_KEYS = frozenset(
    {
        "$ref",
        "format",
        "title",
        "description",
        "default",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "additionalProperties",
        "type",
        "items",
        "allOf",
        "properties",
        "discriminator",
        "readOnly",
        "xml",
        "externalDocs",
        "example",
        "x-ms-dynamic-list",
        "x-ms-dynamic-values",
        "x-ms-enum",
        "x-ms-enum-values",
        "x-ms-localizeDefaultValue",
        "x-ms-media-kind",
        "x-ms-notification-url",
        "x-ms-summary",
        "x-ms-test-value",
        "x-ms-visibility",
        "x-ms-dynamic-schema",
        "x-ms-dynamic-properties",
        "x-ms-dynamic-tree",
    }
)
SECURITY_KEYS: Mapping[str, frozenset[str]] = {
    "basic": frozenset({"type", "description"}),
    "apiKey": frozenset({"type", "name", "in", "description"}),
    "oauth2": frozenset({"type", "flow", "scopes", "authorizationUrl", "tokenUrl", "description"}),
}
#: the required URLs of each OAuth 2.0 flow
OAUTH_FLOWS: Mapping[str, tuple[str, ...]] = {
    "implicit": ("authorizationUrl",),
    "password": ("tokenUrl",),
    "application": ("tokenUrl",),
    "accessCode": ("authorizationUrl", "tokenUrl"),
}
FORMATS = frozenset(
    {
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "binary",
        "date",
        "date-time",
        "password",
        "date-no-tz",
        "email",
        "html",
        "uri",
        "uuid",
    }
)
NON_BODY_TYPES = frozenset({"string", "number", "integer", "boolean", "array"})
VISIBILITY = frozenset({"important", "advanced", "internal"})
TRIGGER_KINDS = frozenset({"batch", "single"})
PAGEABLE_KEYS = frozenset({"nextLinkName"})
#: Power Platform products a connector's title and description may not name
POWER_PLATFORM_PRODUCTS = ("Power Automate", "Power Apps", "Power BI", "Copilot Studio")
#: words a Title Case title may keep in lower case (never its first word)
SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "via"}
)
_CAMEL_HUMP = re.compile(r"[a-z][A-Z]")


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Every rule ``doc`` breaks, as ``<path>: <problem>`` (empty when the connector passes)."""
    return list(_document(doc))


# ---------------------------------------------------------------------- walkers


def _keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> Iterator[str]:
    for key in obj:
        if key not in allowed and not _VENDOR.match(str(key)):
            yield f"{where}: '{key}' is not allowed here"


def _document(doc: Mapping[str, Any]) -> Iterator[str]:
    yield from _keys(doc, ROOT_KEYS, "$")
    yield from _info(doc.get("info"))
    yield from _security(doc)
    for index, tag in enumerate(doc.get("tags") or []):
        yield from _keys(tag, TAG_KEYS, f"$.tags[{index}]")
    definitions = doc.get("definitions") or {}
    for name, schema in definitions.items():
        yield from _schema(schema, f"$.definitions.{name}", titled=False)
    for path, item in (doc.get("paths") or {}).items():
        yield from _path_item(doc, path, item)


def _info(info: Any) -> Iterator[str]:
    if not isinstance(info, Mapping):
        yield "$.info: missing"
        return
    yield from _keys(info, INFO_KEYS, "$.info")
    title, description = str(info.get("title") or ""), str(info.get("description") or "")
    if not title or len(title) > 30:
        yield "$.info.title: a connector title has 1 to 30 characters"
    for field, text in (("title", title), ("description", description)):
        if re.search(r"\bAPIs?\b", text):
            yield f"$.info.{field}: may not contain the word 'API'"
        named = [p for p in POWER_PLATFORM_PRODUCTS if p.lower() in text.lower()]
        if named:
            yield f"$.info.{field}: may not name a Power Platform product ({', '.join(named)})"
    if not description:
        yield "$.info.description: missing"
    contact = info.get("contact")
    if not isinstance(contact, Mapping):
        yield "$.info.contact: missing (who answers for this connector)"
    else:
        yield from _keys(contact, CONTACT_KEYS, "$.info.contact")
        if not contact.get("name") or not (contact.get("url") or contact.get("email")):
            yield "$.info.contact: needs a name and a url or an email"


def _security(doc: Mapping[str, Any]) -> Iterator[str]:
    definitions = doc.get("securityDefinitions") or {}
    if len(definitions) != 1:
        yield (
            f"$.securityDefinitions: a connector has exactly one authentication type "
            f"(found {len(definitions)})"
        )
    for name, definition in definitions.items():
        where = f"$.securityDefinitions.{name}"
        kind = definition.get("type")
        if kind not in SECURITY_KEYS:
            yield f"{where}: type must be basic, apiKey or oauth2"
            continue
        yield from _keys(definition, SECURITY_KEYS[kind], where)
        if kind == "oauth2":
            flow = definition.get("flow")
            if flow not in OAUTH_FLOWS:
                yield f"{where}: flow must be one of {', '.join(OAUTH_FLOWS)}"
                continue
            for url in OAUTH_FLOWS[flow]:
                if not str(definition.get(url) or "").startswith("https://"):
                    yield f"{where}: {url} must be an https URL"
    for requirement in doc.get("security") or []:
        for name in requirement:
            if name not in definitions:
                yield f"$.security: names '{name}', which is not defined"


def _path_item(doc: Mapping[str, Any], path: str, item: Mapping[str, Any]) -> Iterator[str]:
    where = f"$.paths['{path}']"
    yield from _keys(item, PATH_ITEM_KEYS, where)
    operations = {m: item[m] for m in METHODS if m in item}
    triggers = [m for m, op in operations.items() if "x-ms-trigger" in op]
    content = item.get("x-ms-notification-content")
    if content is not None:
        if not isinstance(content, Mapping) or "schema" not in content:
            yield f"{where}.x-ms-notification-content: needs a schema"
        else:
            yield from _schema(content["schema"], f"{where}.x-ms-notification-content.schema")
        if not triggers:
            yield f"{where}.x-ms-notification-content: no operation of this path is a trigger"
    for method, op in operations.items():
        yield from _operation(doc, f"{where}.{method}", op, content)


def _operation(
    doc: Mapping[str, Any], where: str, op: Mapping[str, Any], content: Any
) -> Iterator[str]:
    yield from _keys(op, OPERATION_KEYS, where)
    summary, description = str(op.get("summary") or ""), str(op.get("description") or "")
    internal = op.get("x-ms-visibility") == "internal"
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", str(op.get("operationId") or "")):
        yield f"{where}.operationId: PascalCase, letters and digits only"
    if not summary:
        yield f"{where}.summary: missing"
    elif len(summary) > 80 or "/" in summary or not summary[-1].isalnum():
        yield f"{where}.summary: at most 80 characters, no '/', ending in a letter or digit"
    elif not summary[0].isupper():
        yield f"{where}.summary: sentence case (starts with a capital)"
    if not description:
        yield f"{where}.description: missing"
    elif description == summary:
        yield f"{where}.description: repeats the summary"
    elif not description.endswith("."):
        yield f"{where}.description: a sentence ending with a period"
    if "x-ms-visibility" in op and op["x-ms-visibility"] not in VISIBILITY:
        yield f"{where}.x-ms-visibility: one of {', '.join(sorted(VISIBILITY))}"
    if "x-ms-trigger" in op:
        if op["x-ms-trigger"] not in TRIGGER_KINDS:
            yield f"{where}.x-ms-trigger: batch or single"
        if not summary.startswith("When "):
            yield f"{where}.summary: a trigger's summary reads 'When ...'"
        if not description.startswith("This operation triggers when"):
            yield f"{where}.description: a trigger's reads 'This operation triggers when ...'"
        if content is None:
            yield f"{where}: a trigger's path item needs x-ms-notification-content (its outputs)"
        if not _has_notification_url(doc, op):
            yield f"{where}: a trigger's body needs a property marked x-ms-notification-url"
    pageable = op.get("x-ms-pageable")
    if pageable is not None:
        yield from _keys(pageable, PAGEABLE_KEYS, f"{where}.x-ms-pageable")
        name = pageable.get("nextLinkName") if isinstance(pageable, Mapping) else None
        if not name:
            yield f"{where}.x-ms-pageable: nextLinkName is required"
        elif name not in _properties(doc, _ok_schema(op)):
            yield f"{where}.x-ms-pageable: '{name}' is not a property of the 200 answer"
    for index, param in enumerate(op.get("parameters") or []):
        yield from _parameter(doc, f"{where}.parameters[{index}]", param, internal)
    yield from _responses(f"{where}.responses", op.get("responses"))


def _parameter(
    doc: Mapping[str, Any], where: str, param: Mapping[str, Any], op_internal: bool
) -> Iterator[str]:
    where = f"{where}({param.get('name')})"
    kind = param.get("in")
    if kind not in PARAMETER_KEYS:
        yield f"{where}: 'in' must be body, header, query, path or formData"
        return
    yield from _keys(param, PARAMETER_KEYS[kind], where)
    yield from _title(param.get("x-ms-summary"), str(param.get("name")), where)
    if not param.get("description"):
        yield f"{where}.description: missing"
    if param.get("x-ms-visibility") not in (None, *VISIBILITY):
        yield f"{where}.x-ms-visibility: one of {', '.join(sorted(VISIBILITY))}"
    hidden_required = (
        param.get("required")
        and param.get("x-ms-visibility") == "internal"
        and "default" not in param
        and not op_internal
    )
    if hidden_required:
        yield f"{where}: required but internal, with no default: no one could fill it in"
    if kind == "body":
        yield from _schema(param.get("schema"), f"{where}.schema", body=True, doc=doc)
        return
    if param.get("type") not in NON_BODY_TYPES:
        yield f"{where}.type: one of {', '.join(sorted(NON_BODY_TYPES))}"
    if kind == "path" and param.get("required") is not True:
        yield f"{where}.required: a path parameter is required"
    if "format" in param and param["format"] not in FORMATS:
        yield f"{where}.format: '{param['format']}' is not a format the schema allows"
    collection = param.get("collectionFormat")
    if collection is not None and collection not in ("csv", "ssv", "tsv", "pipes", "multi"):
        yield f"{where}.collectionFormat: not one the schema allows"
    if collection == "multi" and kind != "query":
        yield f"{where}.collectionFormat: multi is for query parameters"
    if param.get("type") == "array":
        items = param.get("items")
        if not isinstance(items, Mapping):
            yield f"{where}.items: an array parameter declares its items"
        else:
            yield from _keys(items, PRIMITIVE_ITEMS_KEYS, f"{where}.items")
            if kind == "query" and not items.get("enum"):
                yield f"{where}.items.enum: an array filter lists the values it accepts"


def _responses(where: str, responses: Any) -> Iterator[str]:
    if not isinstance(responses, Mapping) or not responses:
        yield f"{where}: at least one response"
        return
    if "default" in responses:
        yield f"{where}.default: declare the success and error statuses, not 'default'"
    if not any(str(code).startswith("2") for code in responses):
        yield f"{where}: no success (2xx) response"
    for code, response in responses.items():
        at = f"{where}['{code}']"
        if not re.fullmatch(r"[1-5][0-9]{2}|default", str(code)) and not _VENDOR.match(code):
            yield f"{at}: not a status code"
            continue
        yield from _keys(response, RESPONSE_KEYS, at)
        if not response.get("description"):
            yield f"{at}.description: missing"
        headers = response.get("headers") or {}
        for name, header in headers.items():
            yield from _keys(header, HEADER_KEYS, f"{at}.headers.{name}")
            if header.get("type") not in NON_BODY_TYPES:
                yield f"{at}.headers.{name}.type: one of {', '.join(sorted(NON_BODY_TYPES))}"
        if str(code) == "202":
            for name in ("Location", "Retry-After"):
                if name not in headers:
                    yield f"{at}.headers: a 202 declares {name} (Logic Apps polls it)"
        if "schema" in response:
            yield from _schema(response["schema"], f"{at}.schema", titled=False)


def _schema(
    schema: Any,
    where: str,
    *,
    titled: bool = False,
    body: bool = False,
    doc: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """A schema object; ``titled``: it is an object's property, which needs a title
    (``x-ms-summary``); ``body``: a request body (its properties also need descriptions)."""
    if not isinstance(schema, Mapping):
        yield f"{where}: a schema must be an object"
        return
    yield from _keys(schema, SCHEMA_KEYS, where)
    if schema.get("type") == "file":
        yield f"{where}.type: 'file' is not allowed in a schema"
    if "format" in schema and schema["format"] not in FORMATS:
        yield f"{where}.format: '{schema['format']}' is not a format the schema allows"
    if schema.get("x-ms-visibility") not in (None, *VISIBILITY):
        yield f"{where}.x-ms-visibility: one of {', '.join(sorted(VISIBILITY))}"
    if titled and "$ref" not in schema:
        yield from _title(schema.get("x-ms-summary"), where.rsplit(".", 1)[-1], where)
        if body and not schema.get("description"):
            yield f"{where}.description: missing"
    properties = schema.get("properties") or {}
    target = schema
    if body and doc is not None and "$ref" in schema:
        target = _resolve(doc, schema)
        properties = target.get("properties") or {}
    required = set(target.get("required") or [])
    for name, prop in properties.items():
        at = f"{where}.properties.{name}"
        if body and target is not schema:
            # a referenced body schema is checked where it is defined; here only as a body
            yield from _title(prop.get("x-ms-summary"), name, at)
            if not prop.get("description"):
                yield f"{at}.description: missing"
            continue
        yield from _schema(prop, at, titled=True, body=body, doc=doc)
        hidden = (
            name in required
            and prop.get("x-ms-visibility") == "internal"
            and "default" not in prop
            and not prop.get("x-ms-notification-url")
        )
        if hidden:
            yield f"{at}: required but internal, with no default: no one could fill it in"
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _schema(items, f"{where}.items", body=body, doc=doc)
    additional = schema.get("additionalProperties")
    if isinstance(additional, Mapping):
        yield from _schema(additional, f"{where}.additionalProperties", body=body, doc=doc)


def _title(title: Any, name: str, where: str) -> Iterator[str]:
    """``x-ms-summary``: a human title (Title Case, at most 80 characters, not the raw name)."""
    if not isinstance(title, str) or not title.strip():
        yield f"{where}.x-ms-summary: missing (the name the designer shows)"
        return
    if title == name:
        yield f"{where}.x-ms-summary: '{title}' is the raw name, not a title"
    if len(title) > 80:
        yield f"{where}.x-ms-summary: at most 80 characters"
    if not title_case(title):
        yield f"{where}.x-ms-summary: '{title}' is not in Title Case"


def title_case(text: str) -> bool:
    """Whether ``text`` reads as a title: words starting with a capital or a digit (small
    words such as "of" excepted after the first), no underscores, no camelCase humps."""
    words = text.split()
    if not words or "_" in text:
        return False
    for index, word in enumerate(words):
        bare = word.strip("()")
        if not bare:
            return False
        if index and bare in SMALL_WORDS:
            continue
        if not (bare[0].isupper() or bare[0].isdigit()) or _CAMEL_HUMP.search(bare):
            return False
    return True


# ---------------------------------------------------------------------- helpers


def _resolve(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        found = (doc.get("definitions") or {}).get(ref.split("/")[-1])
        return found if isinstance(found, Mapping) else {}
    return schema


def _ok_schema(op: Mapping[str, Any]) -> Mapping[str, Any]:
    response = (op.get("responses") or {}).get("200") or {}
    schema = response.get("schema")
    return schema if isinstance(schema, Mapping) else {}


def _properties(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> set[str]:
    return set((_resolve(doc, schema).get("properties") or {}).keys())


def _has_notification_url(doc: Mapping[str, Any], op: Mapping[str, Any]) -> bool:
    for param in op.get("parameters") or []:
        if param.get("in") == "body":
            schema = _resolve(doc, param.get("schema") or {})
            props = schema.get("properties") or {}
            if any(p.get("x-ms-notification-url") is True for p in props.values()):
                return True
    return False
