"""Building pydantic models from values that are already valid, cheaply. Pure.

`make` does only what `model_construct` does last (set `__dict__`, the fields set, no
extra, no private values), through `BaseModel`'s slot descriptors, for classes where that
is all it would do (`direct`); `updated` is `model_copy(update=...)` the same way.
Normalization builds ~24 models per VM with them. Called by `reconciler.loader.normalize`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_new = object.__new__
_set_dict, _set_fields_set, _set_extra, _set_private = (BaseModel.__dict__[name].__set__ for name in _SLOTS)
_DIRECT: dict[type[BaseModel], bool] = {}


def direct(cls: type[BaseModel]) -> bool:
    """Whether `model_construct` of `cls` amounts to filling `BaseModel`'s four slots:
    no post-init hook, no private attributes, no extra fields kept, not a root model, no
    `__new__` and no slot of its own in their place."""
    known = _DIRECT.get(cls)
    if known is None:
        known = _DIRECT[cls] = not (
            cls.__pydantic_post_init__
            or cls.__private_attributes__
            or cls.__pydantic_root_model__
            or cls.model_config.get("extra") == "allow"
            or cls.__new__ is not _new
            or any(_owner(cls, name) is not BaseModel for name in _SLOTS)
        )
    return known


def _owner(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def make(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """`cls.model_construct(_fields_set=fields_set, **values)` where `values` holds every
    field, by Python name and in field order, each already valid. `values` is kept, not
    copied: the caller hands it over, and `fields_set` too (as `model_construct` keeps
    it), so frozen models may share one. Below pydantic's public API on purpose:
    `model_construct` searches every field's aliases and defaults on each call (3 us for
    `Metadata`, 24,000 calls per 1,000 VMs); this takes 0.5 us. tests/loader/test_models.py
    checks the result against `model_construct`."""
    if not (_DIRECT.get(cls) or direct(cls)):
        return cls.model_construct(fields_set, **values)
    model: M = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, fields_set)
    _set_extra(model, None)
    _set_private(model, None)
    return model


def updated(model: M, changes: dict[str, Any]) -> M:
    """`model.model_copy(update=changes)` for a model without extra or private values
    (every manifest model: extra fields are forbidden, none has private attributes)."""
    if model.__pydantic_extra__ or model.__pydantic_private__ or not direct(type(model)):
        return model.model_copy(update=changes)
    values = model.__dict__.copy()
    values.update(changes)
    return make(type(model), values, model.__pydantic_fields_set__.union(changes))
