"""Building pydantic models from values that are already valid, cheaply.

Pure. Normalization makes about 24 models per VM (metadata, spec and resource for each
device); pydantic's `model_construct` searches every field's aliases and defaults on each
call and `model_copy` copies first, which was half the loader's time. `make` does only
what `model_construct` does last: set `__dict__`, the fields set, no extra and no private
values. It is used only for classes where that is all `model_construct` would do (checked
once per class, see `direct`); for any other class it calls `model_construct`.
Called by `reconciler.loader.normalize`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_set_attr = object.__setattr__  # pydantic's own way past a frozen model's __setattr__


@cache
def direct(cls: type[BaseModel]) -> bool:
    """Whether `model_construct` of `cls` amounts to setting `__dict__` and the fields
    set: no post-init hook, no private attributes, no extra fields kept, not a root model."""
    return not (
        cls.__pydantic_post_init__
        or cls.__private_attributes__
        or cls.__pydantic_root_model__
        or cls.model_config.get("extra") == "allow"
    )


def make(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """`cls.model_construct(_fields_set=fields_set, **values)` where `values` holds every
    field, by Python name and in field order, each already valid. `values` is kept, not
    copied: the caller hands it over."""
    if not direct(cls):
        return cls.model_construct(fields_set, **values)
    model = cls.__new__(cls)
    _set_attr(model, "__dict__", values)
    _set_attr(model, "__pydantic_fields_set__", fields_set)
    _set_attr(model, "__pydantic_extra__", None)
    _set_attr(model, "__pydantic_private__", None)
    return model


def updated(model: M, changes: dict[str, Any]) -> M:
    """`model.model_copy(update=changes)` for a model without extra or private values
    (every manifest model: extra fields are forbidden, none has private attributes)."""
    if model.__pydantic_extra__ or model.__pydantic_private__ or not direct(type(model)):
        return model.model_copy(update=changes)
    values = model.__dict__.copy()
    values.update(changes)
    return make(type(model), values, model.__pydantic_fields_set__.union(changes))
