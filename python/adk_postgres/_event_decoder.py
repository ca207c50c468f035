"""Decode stored event JSON into Events without re-validating it.

Stored events were written by ``Event.__pydantic_serializer__.to_json(event, exclude_none=True)``
from Events that were already valid, so full validation mostly re-does work whose outcome is
known. This module parses with ``pydantic_core.from_json`` and builds the models directly
(``__new__`` + ``__dict__``/``__pydantic_fields_set__``/…), driven by converters compiled once
per model class from its ``model_fields``.

The goal is an object *equal and identical* (same types, same ``model_fields_set``, same
``__pydantic_extra__``/``__pydantic_private__``) to ``Event.model_validate_json(raw)``. Whenever
a converter meets something it does not reproduce exactly (an unknown key, a type it was not
compiled for, a union of models, a validator nobody reviewed, …) it raises :class:`Unsupported`
and that one event goes through ``Event.model_validate_json`` instead, which also raises the
``ValidationError`` for bad data. A wrong object is never the cheaper option.

Validators and hooks are reviewed one by one (see ``_NOOP_BEFORE`` and friends): a model that
declares one not listed there, or one whose source has changed since it was reviewed
(``_REVIEWED_SOURCE``), is never built on the fast path.
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import hashlib
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import annotated_types
from google.adk.events.event import Event
from pydantic import BaseModel
from pydantic._internal._config import config_defaults
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, from_json

__all__ = ["Unsupported", "decode_event", "decode_events", "fast_decode", "stats"]


class Unsupported(Exception):
    """The fast path cannot prove it builds what validation builds; validate instead."""


Converter = Callable[[Any], Any]


class _Stats:
    """How many events took each path (lets tests prove the fast path is really used)."""

    __slots__ = ("fast", "fallback")

    def __init__(self) -> None:
        self.fast = 0
        self.fallback = 0

    def reset(self) -> None:
        self.fast = 0
        self.fallback = 0


stats = _Stats()

# --------------------------------------------------------------------------- reviewed hooks

#: ``mode='before'`` model validators that return their input unchanged for a dict parsed from
#: JSON, as long as none of the listed keys is present. Those keys are not fields, so the fast
#: path already refuses them (unknown key); compilation checks that they are indeed not fields.
_NOOP_BEFORE: dict[str, frozenset[str]] = {
    # Only logs a warning when a value is a BaseModel instance; JSON never yields one.
    "google.genai._common.BaseModel._check_field_type_mismatches": frozenset(),
    # Renames 'citationSources' to 'citations'.
    "google.genai.types.CitationMetadata._rename_citation_sources": frozenset({"citationSources"}),
    # Routes the convenience kwargs message/state/route/node_path to nested fields.
    "google.adk.events.event.Event._accept_convenience_kwargs": frozenset(
        {"message", "state", "route", "node_path"}
    ),
}
#: ``mode='after'`` field validators (no ``info`` argument): called on the converted value,
#: which is the very value validation hands them.
_AFTER_FIELD: frozenset[str] = frozenset(
    {
        # dict values -> AuthConfig.model_validate(value) (AuthConfig is Any at runtime).
        "google.adk.events.event_actions.EventActions._parse_auth_configs",
    }
)
#: ``mode='after'`` model validators (no ``info``) that only check and return ``self``.
_AFTER_MODEL: frozenset[str] = frozenset(
    {"google.adk.models.cache_metadata.CacheMetadata._enforce_active_state_invariant"}
)
#: Custom ``__init__``s: pydantic-core calls them with the parsed JSON object as keyword
#: arguments. Part's drops keyword arguments that are None and otherwise passes everything to
#: ``BaseModel.__init__`` (validation in Python mode, which for the converters below gives the
#: same values as JSON mode), so it is reproduced by refusing None values.
_CUSTOM_INIT: frozenset[str] = frozenset({"google.genai.types.Part.__init__"})

#: sha256 (first 16 hex digits) of the source of each hook above, as reviewed (google-adk
#: 2.13.0, google-genai 2.34.0). A hook whose source has changed since counts as unreviewed: its
#: models go to validation until someone re-reads it and updates the hash (the test that every
#: model an Event reaches is compiled then fails).
_REVIEWED_SOURCE: dict[str, str] = {
    "google.genai._common.BaseModel._check_field_type_mismatches": "1a70a03f9d427cbf",
    "google.genai.types.CitationMetadata._rename_citation_sources": "f8b0a39d4625a8f3",
    "google.adk.events.event.Event._accept_convenience_kwargs": "95e6a783c2eae705",
    "google.adk.events.event_actions.EventActions._parse_auth_configs": "2b3643f6389c8e0c",
    "google.adk.models.cache_metadata.CacheMetadata._enforce_active_state_invariant": (
        "f996040c33d438b3"
    ),
    "google.genai.types.Part.__init__": "e3040403f4874acf",
    "google.adk.events.event.Event.model_post_init": "a5c47a8b52f02ef1",
}
_EVENT_POST_INIT = "google.adk.events.event.Event.model_post_init"
_PYDANTIC_PRIVATE_INIT = "pydantic._internal._model_construction.init_private_attributes"

#: Config keys that do not change what validation of the supported shapes produces (the
#: ones that matter are handled explicitly in `_ModelPlan.compile`).
_HARMLESS_CONFIG = frozenset(
    {
        "title",
        "alias_generator",
        "populate_by_name",
        "validate_by_name",
        "validate_by_alias",
        "serialize_by_alias",
        "from_attributes",
        "protected_namespaces",
        "extra",
        "arbitrary_types_allowed",
        "ser_json_bytes",
        "val_json_bytes",
        "ser_json_inf_nan",
        "ser_json_timedelta",
        "ser_json_temporal",
        "ignored_types",
        "defer_build",
        "frozen",
        "json_schema_extra",
        "json_schema_mode_override",
        "json_schema_serialization_defaults_required",
        "use_attribute_docstrings",
        "loc_by_alias",
        "hide_input_in_errors",
        "revalidate_instances",
        "validate_assignment",
        "validation_error_cause",
        "cache_strings",
        "field_title_generator",
        "model_title_generator",
        "polymorphic_serialization",
    }
)


def _qualname(func: Any) -> str:
    func = getattr(func, "__func__", func)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


_reviewed_cache: dict[Any, str | None] = {}


def _reviewed(func: Any) -> str | None:
    """The qualified name of ``func`` if it is a reviewed hook whose source is unchanged."""
    func = getattr(func, "__func__", func)
    if func in _reviewed_cache:
        return _reviewed_cache[func]
    name: str | None = _qualname(func)
    expected = _REVIEWED_SOURCE.get(name)  # type: ignore[arg-type]
    try:
        source = textwrap.dedent(inspect.getsource(func)) if expected else ""
    except (OSError, TypeError):
        source = ""  # no source to compare: not reviewed
    if not expected or hashlib.sha256(source.encode()).hexdigest()[:16] != expected:
        name = None
    _reviewed_cache[func] = name
    return name


# --------------------------------------------------------------------------- converters
#
# An annotation compiles to a `Plan`: the Python types a parsed JSON value may have to be kept
# as it is (a fresh object from `from_json`, so nothing is shared), and a converter for any
# other type (None: anything else is refused). Checking `type(value) in accepted` inline is
# much cheaper than a call per field, and most fields are plain strings, numbers or None.

Plan = tuple[frozenset[type], Converter | None]

_NONE_TYPE = type(None)
#: Every type `from_json` produces: what an `Any` field keeps.
_JSON_TYPES: frozenset[type] = frozenset({dict, list, str, int, float, bool, _NONE_TYPE})
_NOTHING: frozenset[type] = frozenset()


def _unsupported(_value: Any) -> Any:
    raise Unsupported


def _any(value: Any) -> Any:
    return value


def _function(plan: Plan) -> Converter:
    """One callable doing what a plan does (for list items, dict values, …)."""
    accepted, convert = plan
    if convert is None:
        if accepted == _JSON_TYPES:
            return _any

        def check(value: Any) -> Any:
            if type(value) in accepted:
                return value
            raise Unsupported

        return check
    if not accepted:
        return convert

    def either(value: Any) -> Any:
        return value if type(value) in accepted else convert(value)

    return either


#: Beyond 2**53 an int does not round-trip through float; leave those to validation.
_FLOAT_EXACT_INT = 2**53


def _float_from_int(value: Any) -> Any:
    # Validation turns a JSON int into a float for a float field (bool is not an int here).
    if type(value) is int and -_FLOAT_EXACT_INT <= value <= _FLOAT_EXACT_INT:
        return float(value)
    raise Unsupported


def _bytes_base64(value: Any) -> Any:
    # The serializer writes urlsafe base64 with padding; only that canonical form is decoded
    # here (pydantic also accepts the standard alphabet and missing padding).
    if type(value) is not str:
        raise Unsupported
    try:
        decoded = base64.urlsafe_b64decode(value)
        canonical = base64.urlsafe_b64encode(decoded) == value.encode("ascii")
    except (binascii.Error, ValueError):
        raise Unsupported from None
    if not canonical:
        raise Unsupported
    return decoded


def _bytes_utf8(value: Any) -> Any:
    if type(value) is not str:
        raise Unsupported
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unsupported from None


def _list_of(item: Plan) -> Converter:
    accepted, convert = item
    if convert is None:
        # Items kept as they are: check them and keep the (fresh) list itself.
        def checked_list(value: Any) -> Any:
            if type(value) is not list:
                raise Unsupported
            for element in value:
                if type(element) not in accepted:
                    raise Unsupported
            return value

        return checked_list
    function = _function(item)

    def list_of(value: Any) -> Any:
        if type(value) is not list:
            raise Unsupported
        return [function(element) for element in value]

    return list_of


def _set_of(item: Plan) -> Converter:
    function = _function(item)

    def set_of(value: Any) -> Any:
        if type(value) is not list:
            raise Unsupported
        return {function(element) for element in value}

    return set_of


def _dict_of(item: Plan) -> Converter:
    function = _function(item)

    def dict_of(value: Any) -> Any:
        if type(value) is not dict:
            raise Unsupported
        if not value:
            return value  # fresh from from_json, as validation's would be
        return {key: function(element) for key, element in value.items()}

    return dict_of


def _enum(enum_cls: type[enum.Enum]) -> Converter:
    members = dict(enum_cls._value2member_map_)

    def convert(value: Any) -> Any:
        # Exact value type only, and only known members: genai's case-insensitive `_missing_`
        # (and its warning for unknown values) stays with validation.
        kind = type(value)
        member = members.get(value) if kind is str or kind is int else None
        if member is None or type(member.value) is not kind:
            raise Unsupported
        return member

    return convert


def _literal(values: tuple[Any, ...]) -> Converter:
    allowed = {(type(v), v) for v in values}

    def convert(value: Any) -> Any:
        if (type(value), value) in allowed:
            return value
        raise Unsupported

    return convert


def _union(members: tuple[Any, ...], bytes_mode: str) -> Plan:
    # A smart union of JSON scalars (and at most one list): a JSON value matches the member of
    # its exact Python type in strict mode, which is what smart-mode validation picks. Anything
    # needing lax matching (an int for a float-only union, …) is left to validation.
    accepted: set[type] = set()
    list_convert: Converter | None = None
    for member in members:
        if member is _NONE_TYPE or member in (bool, int, float, str):
            accepted.add(member)
        elif get_origin(member) is list and list_convert is None:
            list_convert = _function(_compile(member, bytes_mode))
        else:
            raise Unsupported
    return frozenset(accepted), list_convert


_UNION_TYPES = (typing.Union, types.UnionType)


def _compile(annotation: Any, bytes_mode: str) -> Plan:
    """The plan of one annotation; raises Unsupported for annotations it cannot do."""
    if annotation is Any:
        return _JSON_TYPES, None
    origin = get_origin(annotation)
    if origin in _UNION_TYPES:
        args = get_args(annotation)
        rest = tuple(a for a in args if a is not _NONE_TYPE)
        if len(rest) == 1 and len(args) == 2:
            accepted, convert = _compile(rest[0], bytes_mode)
            return accepted | {_NONE_TYPE}, convert
        try:
            return _union(args, bytes_mode)
        except Unsupported:
            if _NONE_TYPE in args:
                return frozenset({_NONE_TYPE}), _unsupported  # None is still None
            raise
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        item_plan = _compile(item, bytes_mode)
        if item_plan == (_JSON_TYPES, None):
            return frozenset({list}), None
        return _NOTHING, _list_of(item_plan)
    if origin is set:
        (item,) = get_args(annotation) or (Any,)
        return _NOTHING, _set_of(_compile(item, bytes_mode))
    if origin is dict:
        key, item = get_args(annotation) or (str, Any)
        if key is not str:
            raise Unsupported
        item_plan = _compile(item, bytes_mode)
        if item_plan == (_JSON_TYPES, None):
            return frozenset({dict}), None
        return _NOTHING, _dict_of(item_plan)
    if origin is Literal:
        return _NOTHING, _literal(get_args(annotation))
    if origin is not None:
        raise Unsupported  # Annotated, tuple, Callable, …
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _NOTHING, _plan(annotation).build
        if issubclass(annotation, enum.Enum):
            return _NOTHING, _enum(annotation)
        if annotation in (str, int, bool):
            return frozenset({annotation}), None
        if annotation is float:
            return frozenset({float}), _float_from_int
        if annotation is bytes:
            if bytes_mode == "base64":
                return _NOTHING, _bytes_base64
            if bytes_mode == "utf8":
                return _NOTHING, _bytes_utf8
    raise Unsupported


def _constrained(convert: Converter, metadata: list[Any]) -> Converter:
    checks: list[Callable[[Any], bool]] = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            checks.append(lambda v, b=item.ge: v >= b)
        elif isinstance(item, annotated_types.Gt):
            checks.append(lambda v, b=item.gt: v > b)
        elif isinstance(item, annotated_types.Le):
            checks.append(lambda v, b=item.le: v <= b)
        elif isinstance(item, annotated_types.Lt):
            checks.append(lambda v, b=item.lt: v < b)
        else:
            raise Unsupported

    def constrained(value: Any) -> Any:
        value = convert(value)
        # A violated bound is a ValidationError: let validation raise it.
        if value is not None and not all(check(value) for check in checks):
            raise Unsupported
        return value

    return constrained


def _after(convert: Converter, validator: Callable[[Any], Any]) -> Converter:
    def after(value: Any) -> Any:
        return validator(convert(value))

    return after


# --------------------------------------------------------------------------- models

_IMMUTABLE_DEFAULTS = (_NONE_TYPE, str, int, float, bool, bytes, enum.Enum)
_new_object = object.__new__
_set = object.__setattr__
# Slot descriptors of BaseModel: calling them directly is cheaper than object.__setattr__.
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_UNSUPPORTED_FIELD: Plan = (_NOTHING, _unsupported)


class _ModelPlan:
    """How to build one model class from a parsed JSON object: `build`, a closure over what
    `compile` found (closure cells are cheaper to read than attributes, and this is the hot
    loop)."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.cls = cls
        self.supported = False
        self.build: Converter = _unsupported

    def compile(self) -> None:
        """Make `build`; it refuses everything unless the whole model is supported."""
        cls = self.cls
        supported = False
        by_key: dict[str, tuple[str, frozenset[type], Converter | None]] = {}
        template: dict[str, Any] = {}
        field_names: frozenset[str] = frozenset()
        required: frozenset[str] = frozenset()
        factories: tuple[tuple[str, Callable[[], Any]], ...] = ()
        factory_names: frozenset[str] = frozenset()
        init_private: Callable[[Any, Any], None] | None = None
        after_model: tuple[Callable[[Any], Any], ...] = ()
        refuse_none = False
        need_id = False

        def build(data: Any) -> Any:
            if not supported or type(data) is not dict:
                raise Unsupported
            if refuse_none and None in data.values():
                raise Unsupported
            # Copy-then-assign keeps model_fields order, as validation's __dict__ has.
            fields = template.copy()
            try:
                for key, value in data.items():
                    name, accepted, convert = by_key[key]
                    if type(value) not in accepted:
                        if convert is None:
                            raise Unsupported
                        value = convert(value)
                    fields[name] = value
            except KeyError:
                raise Unsupported from None  # unknown key: ignored/forbidden/rerouted
            fields_set = set(data)
            if not fields_set <= field_names:
                # Keys given by alias: the set holds field names.
                fields_set = {by_key[key][0] for key in data}
                if len(fields_set) != len(data):
                    raise Unsupported  # a field given both by name and by alias
            if required and not required <= fields_set:
                raise Unsupported
            if need_id and not fields["id"]:
                raise Unsupported
            if not factory_names <= fields_set:  # stored events usually have them all
                for name, factory in factories:
                    if name not in fields_set:
                        fields[name] = factory()
            obj = _new_object(cls)
            _set(obj, "__dict__", fields)
            _set_fields_set(obj, fields_set)
            _set_extra(obj, None)
            _set_private(obj, None)
            if init_private is not None:
                init_private(obj, None)  # what validation calls as model_post_init
            if after_model:
                for validator in after_model:
                    if validator(obj) is not obj:
                        raise Unsupported
            return obj

        # Set before the fields are compiled: a model may reach itself through them.
        self.build = build

        if not cls.__pydantic_complete__:
            cls.model_rebuild()
        config = cls.model_config
        # Any other setting must be at its default (e.g. allow_inf_nan=False or strict=True
        # change what validation accepts).
        if any(
            k not in config_defaults or config[k] != config_defaults[k]
            for k in set(config) - _HARMLESS_CONFIG
        ):
            return
        if config.get("extra") == "allow":
            return
        bytes_mode = config.get("val_json_bytes", "utf8")
        by_name = bool(config.get("validate_by_name") or config.get("populate_by_name"))
        by_alias = config.get("validate_by_alias", True)
        if not by_name and not by_alias:
            return

        if (
            cls.__get_pydantic_core_schema__.__func__  # type: ignore[attr-defined]
            is not BaseModel.__get_pydantic_core_schema__.__func__  # type: ignore[attr-defined]
        ):
            return  # its schema is not (only) its fields
        decorators = cls.__pydantic_decorators__
        if decorators.validators or decorators.root_validators:
            return
        trigger_keys: set[str] = set()
        after: list[Callable[[Any], Any]] = []
        for dec in decorators.model_validators.values():
            name = _reviewed(dec.func)
            if dec.info.mode == "before" and name in _NOOP_BEFORE:
                trigger_keys |= _NOOP_BEFORE[name]
            elif dec.info.mode == "after" and name in _AFTER_MODEL:
                after.append(dec.func)
            else:
                return
        after_field: dict[str, list[Callable[[Any], Any]]] = {}
        for dec in decorators.field_validators.values():
            name = _reviewed(dec.func)
            if dec.info.mode != "after" or name not in _AFTER_FIELD:
                return
            bound = getattr(cls, dec.cls_var_name)
            for field in dec.info.fields:
                after_field.setdefault(field, []).append(bound)

        if cls.__init__ is not BaseModel.__init__:
            if _reviewed(cls.__init__) not in _CUSTOM_INIT:
                return
            refuse_none = True
        if cls.__pydantic_post_init__ is not None:
            if _reviewed(cls.model_post_init) == _EVENT_POST_INIT:
                # It only assigns a fresh id when `id` is empty; a stored id is never empty,
                # and an empty one goes to validation (it would get a random id anyway).
                need_id = True
            elif _qualname(cls.model_post_init) == _PYDANTIC_PRIVATE_INIT:
                # pydantic's own: private attribute defaults (and factories).
                init_private = cls.model_post_init
            else:
                return
        elif cls.__private_attributes__:
            return  # private attributes are set up by model_post_init: which one is this?

        required_names: set[str] = set()
        factory_list: list[tuple[str, Callable[[], Any]]] = []
        for field_name, info in cls.model_fields.items():
            accepted, convert = self._field_plan(info, bytes_mode)
            validators = after_field.pop(field_name, ())
            if validators:
                convert = _function((accepted, convert))
                accepted = _NOTHING
                for validator in validators:
                    convert = _after(convert, validator)
            entry = (field_name, accepted, convert)
            keys = set()
            if info.alias is None or by_name:
                keys.add(field_name)
            if info.alias is not None and by_alias:
                keys.add(info.alias)
            for key in keys:
                if key in by_key:
                    return  # one key naming two fields: leave the precedence to validation
                by_key[key] = entry
            if info.default_factory is not None:
                if info.default_factory_takes_validated_data:
                    return
                template[field_name] = PydanticUndefined
                factory_list.append((field_name, info.default_factory))  # type: ignore[arg-type]
            elif info.default is PydanticUndefined:
                template[field_name] = PydanticUndefined
                required_names.add(field_name)
            elif isinstance(info.default, _IMMUTABLE_DEFAULTS):
                template[field_name] = info.default
            else:
                # Validation copies a mutable default for every instance.
                template[field_name] = PydanticUndefined
                factory_list.append((field_name, lambda d=info.default: copy.deepcopy(d)))
        if after_field or trigger_keys & by_key.keys():
            return
        if need_id and "id" not in template:
            return
        field_names = frozenset(cls.model_fields)
        required = frozenset(required_names)
        factories = tuple(factory_list)
        factory_names = frozenset(name for name, _ in factories)
        after_model = tuple(after)
        supported = self.supported = True

    @staticmethod
    def _field_plan(info: FieldInfo, bytes_mode: str) -> Plan:
        if (
            info.validate_default
            or info.discriminator is not None
            or (info.validation_alias is not None and info.validation_alias != info.alias)
        ):
            return _UNSUPPORTED_FIELD
        try:
            plan = _compile(info.annotation, bytes_mode)
            if info.metadata:
                plan = (_NOTHING, _constrained(_function(plan), info.metadata))
        except Unsupported:
            return _UNSUPPORTED_FIELD
        return plan


_PLANS: dict[type[BaseModel], _ModelPlan] = {}


def _plan(cls: type[BaseModel]) -> _ModelPlan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _ModelPlan(cls)
        plan.compile()
    return plan


# --------------------------------------------------------------------------- entry points

_event_build: Converter | None = None


def fast_decode(raw: bytes) -> Event:
    """Build the Event on the fast path, or raise Unsupported (never validates)."""
    global _event_build
    if _event_build is None:
        _event_build = _plan(Event).build
    # NaN/Infinity/1e400 need no special case: from_json and validation's JSON reader (both
    # jiter) give the same floats, and float fields keep them (allow_inf_nan is refused).
    try:
        data = from_json(raw)
    except ValueError:
        raise Unsupported from None
    return _event_build(data)


def decode_event(raw: bytes) -> Event:
    """``Event.model_validate_json(raw)``, faster for the shapes ADK stores."""
    return decode_events([raw])[0]


def decode_events(events: list[bytes]) -> list[Event]:
    """``[Event.model_validate_json(raw) for raw in events]``, faster for the shapes ADK
    stores."""
    decoded: list[Event] = []
    append = decoded.append
    for raw in events:
        try:
            append(fast_decode(raw))
        except Exception:
            # Unsupported, or anything unexpected: validation is always right (and raises the
            # ValidationError for corrupt data).
            stats.fallback += 1
            append(Event.model_validate_json(raw))
        else:
            stats.fast += 1
    return decoded
