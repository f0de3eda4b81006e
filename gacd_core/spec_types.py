"""Value types of the job specification, each stating its bounds once for validation and JSON Schema.
Torch-free.

The HTTP API validates a job strictly (no ``"5"`` for 5, no ``1`` for true); the CLI laxly, since
YAML and ``--set`` give it text. These types serve both:

- :data:`Int`: an integer, which a JSON number without a fraction (``5.0``) also spells, as JSON
  Schema's ``integer`` says; :func:`int_in` the same within bounds (bounds given to the field of an
  ``Int | None`` would not reach its JSON Schema);
- :func:`triple`: three numbers (an RGB mean or std), given as a JSON array;
- :func:`unique_list`: a list whose items do not repeat, stated as ``uniqueItems`` in the schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_integral)]


def int_in(*, ge: int | None = None, le: int | None = None) -> Any:
    """An :data:`Int` from ``ge`` to ``le``."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def triple(item: Any) -> Any:
    """Three values of type ``item``, read from a list or a tuple."""
    return Annotated[tuple[item, item, item], BeforeValidator(_as_tuple)]


class _UniqueItems:
    """``uniqueItems: true`` in the JSON Schema of the list it annotates (the check is the field's)."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["uniqueItems"] = True
        return out


def unique_list(item: Any) -> Any:
    """A list of ``item`` documented as holding no repeats; the field's validator refuses repeats, with
    a message that names the field."""
    return Annotated[list[item], _UniqueItems()]
