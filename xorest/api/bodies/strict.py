"""Strict fields for JSON bodies: JSON's own types only, sizes with units, ids."""

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ...config import parse_size


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
    """Bytes: a number, or a string such as ``"4 GiB"``, ``"512M"`` (:func:`~xorest.config.parse_size`)."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_size(value)
        except ValueError:
            raise ValidationError("must be a size in bytes, a number or text such as 4GiB") from None


def Id(**kwargs):  # noqa: N802 (a field factory, named as the fields it makes)
    return fields.String(validate=validate.Length(min=1, max=200), **kwargs)


def StringMap(**kwargs):  # noqa: N802
    return fields.Dict(keys=fields.String(), values=fields.String(), **kwargs)


def Strings(**kwargs):  # noqa: N802
    return fields.List(fields.String(), **kwargs)
