"""A small subset of ESO's Go templates (engine v2) for ``spec.target.template.data``.

Supported: literal text, ``{{ .key }}``, ``{{ index . "key" }}`` and pipes through ``toString``,
``upper``, ``lower``, ``trim``, ``b64enc`` and ``b64dec`` (``{{ .token | b64dec }}``), with
``{{-``/``-}}`` trimming. Anything else raises TemplateError, so a template the sandbox cannot
render fails the sync visibly instead of producing a wrong Secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Final


class TemplateError(Exception):
    """A template uses something outside the supported subset, or names a missing key."""


_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)$")
_INDEX = re.compile(r'^index\s+\.\s+"([^"]+)"$')


def _b64dec(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise TemplateError("b64dec: the value is not valid base64 text") from error


FUNCTIONS: Final[Mapping[str, Callable[[str], str]]] = {
    "toString": str,
    "upper": str.upper,
    "lower": str.lower,
    "trim": str.strip,
    "b64enc": lambda value: base64.b64encode(value.encode()).decode(),
    "b64dec": _b64dec,
}


def render(template: str, values: Mapping[str, str]) -> str:
    """Render one template string against the fetched values (secretKey -> text)."""
    output: list[str] = []
    position = 0
    for match in _ACTION.finditer(template):
        literal = template[position : match.start()]
        if match.group(1):
            literal = literal.rstrip()
        output.append(literal)
        output.append(_evaluate(match.group(2).strip(), values))
        position = match.end()
        if match.group(3):
            while position < len(template) and template[position].isspace():
                position += 1
    output.append(template[position:])
    return "".join(output)


def _evaluate(expression: str, values: Mapping[str, str]) -> str:
    stages = [stage.strip() for stage in expression.split("|")]
    head = stages[0]
    field = _FIELD.match(head) or _INDEX.match(head)
    if field is None:
        raise TemplateError(f"unsupported template expression {{{{ {expression} }}}}")
    key = field.group(1)
    if key not in values:
        raise TemplateError(f"template references {key!r}, which is not among the fetched keys")
    result = values[key]
    for name in stages[1:]:
        function = FUNCTIONS.get(name)
        if function is None:
            raise TemplateError(f"unsupported template function {name!r}")
        result = function(result)
    return result
