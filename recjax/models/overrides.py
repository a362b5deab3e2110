"""Changing a config's fields from text (`key=value`), validated like the config itself.

Fields of scalar types (int, float, bool, str, and optional str or int such as `table_dtype`)
and tuples of ints are overridable; a tuple of ints is written with commas or dashes ("512,256,1"
or "512-256-1"). The new config is made with `dataclasses.replace`, so its own validation runs on
the result.
"""

import dataclasses
import typing

from recjax.models.family import ModelConfig

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def overridable_fields(config: ModelConfig) -> dict[str, object]:
    """{field name: its type} of the fields that `apply_overrides` can change."""
    hints = typing.get_type_hints(type(config))
    return {
        field.name: hints[field.name]
        for field in dataclasses.fields(config)
        if hints[field.name] in (int, float, bool, str, str | None, int | None, tuple[int, ...])
    }


def _parse(config: ModelConfig, key: str, text: str, kind: object) -> object:
    try:
        if kind is bool:
            return _BOOLEANS[text.strip().lower()]
        if kind == str | None:
            return text
        if kind == int | None:
            return int(text)
        if kind == tuple[int, ...]:
            return tuple(int(part) for part in text.replace("-", ",").split(",") if part.strip())
        return kind(text)
    except (KeyError, ValueError) as error:
        accepted = {
            bool: "true or false",
            int: "an integer",
            int | None: "an integer",
            float: "a number",
        }.get(kind, "integers separated by commas, e.g. 512,256,1")
        raise ValueError(
            f"{config.name}: cannot read {key}={text!r}; {key} takes {accepted}."
        ) from error


def apply_overrides(config: ModelConfig, overrides: list[str]) -> ModelConfig:
    """`config` with every "key=value" of `overrides` applied; ValueError names a bad one."""
    fields = overridable_fields(config)
    changes: dict[str, object] = {}
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"An override must read key=value; got {override!r}.")
        if key not in fields:
            raise ValueError(
                f"{config.name}: {key!r} is not an overridable field; overridable: "
                f"{sorted(fields)}."
            )
        changes[key] = _parse(config, key, text, fields[key])
    if not changes:
        return config
    return dataclasses.replace(config, **changes)
