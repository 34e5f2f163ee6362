"""Strict fields for JSON bodies: JSON's own types only, sizes with units, ids."""
import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Bool(fields.Boolean):
    """JSON ``true``/``false`` only (marshmallow would take ``"yes"`` or ``1``)."""

    def __init__(self, **kwargs):
        super().__init__(truthy={True}, falsy={False}, **kwargs)


class Number(fields.Field):
    """A JSON number (not a boolean, not a string)."""

    def __init__(self, integer=False, **kwargs):
        self.integer = integer
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValidationError("must be a number")
        if self.integer and value != int(value):
            raise ValidationError("must be an integer")
        return int(value) if self.integer else value


class Size(fields.Field):
    """Bytes: a number, or a string such as ``"4 GiB"``, ``"512M"`` (Xen Orchestra's ``parseSize``)."""

    UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be a size in bytes")
        if isinstance(value, (int, float)) and value == value and value >= 0:
            return int(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
        if not isinstance(value, str) or not match:
            raise ValidationError("must be a size in bytes, a number or text such as 4GiB")
        return int(float(match.group(1)) * self.UNITS[match.group(2).lower()])


def Id(**kwargs):  # noqa: N802 (a field factory, named as the fields it makes)
    return fields.String(validate=validate.Length(min=1, max=200), **kwargs)


def StringMap(**kwargs):  # noqa: N802
    return fields.Dict(keys=fields.String(), values=fields.String(), **kwargs)


def Strings(**kwargs):  # noqa: N802
    return fields.List(fields.String(), **kwargs)
