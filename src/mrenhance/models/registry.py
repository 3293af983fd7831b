"""One list of networks: register a class (or factory) under names, build it from a config.

A registered name carries its paper defaults; :func:`create_model` merges them with the
caller's options, checks every option against the constructor's signature and type hints,
and stamps the built module with ``mrenhance_name`` and ``mrenhance_config`` (the full
resolved, JSON-serialisable config), so a weights card can record how to rebuild it::

    @register_model("mdcsrn-b4u4", family="mdcsrn", task="sr_t1", spatial_dims=3,
                    in_channels=1, out_channels=1, description="...", paper="...",
                    blocks=4, units=4)
    class MDCSRN(nn.Module): ...

    model = create_model("mdcsrn-b4u4", growth=8)
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from mrenhance.errors import ConfigError

__all__ = [
    "ModelInfo",
    "ROLES",
    "create_model",
    "get_model_info",
    "list_models",
    "register_model",
]

#: What a network is for: a "generator" maps an image to an image (every enhancement
#: network); a "critic" scores images for adversarial training and is never applied to data.
ROLES = ("generator", "critic")

# Keyword arguments of register_model that describe a model rather than configure it.
_INFO_KEYS = ("spatial_dims", "in_channels", "out_channels")


@dataclass(frozen=True)
class ModelInfo:
    """What a registered name builds.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"mdcsrn-b4u4"``.
    family : str
        Architecture family shared by names built from one class, e.g. ``"mdcsrn"``.
    task : str
        Task module the network was designed for, e.g. ``"sr_t1"``.
    spatial_dims : int
        2 or 3: the number of spatial axes of the input tensor (batch, channel, *spatial).
    in_channels, out_channels : int
        Channels of the input and output tensors (a critic's output is a score, 1).
    description : str
        One line for ``mrenhance models``.
    paper : str
        Short citation with the section the network follows.
    defaults : dict
        Constructor keyword arguments this name sets (on top of the constructor defaults).
    role : str
        ``"generator"`` or ``"critic"`` (see :data:`ROLES`).
    """

    name: str
    family: str
    task: str
    spatial_dims: int
    in_channels: int
    out_channels: int
    description: str
    paper: str
    defaults: dict = field(default_factory=dict, hash=False)
    role: str = "generator"


_T = TypeVar("_T")
_REGISTRY: dict[str, tuple[ModelInfo, Callable[..., nn.Module]]] = {}


def register_model(
    name: str,
    *,
    family: str,
    task: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    description: str,
    paper: str,
    role: str = "generator",
    **defaults: Any,
) -> Callable[[_T], _T]:
    """Decorator registering a ``torch.nn.Module`` class or factory under ``name``.

    Stack it to register one class under several names with different ``defaults``.
    ``spatial_dims``, ``in_channels`` and ``out_channels`` describe the registered model;
    when the constructor takes an argument of that name and ``defaults`` does not set it,
    the described value is also passed to the constructor so the two cannot disagree.

    Raises
    ------
    ValueError
        If ``name`` is taken by another builder, ``role`` is unknown, or a default is not
        a constructor argument (programming errors, found at import time).
    """
    if role not in ROLES:
        raise ValueError(f"register_model({name!r}): role must be one of {ROLES}, got {role!r}")

    def decorate(builder: _T) -> _T:
        if not callable(builder):
            raise ValueError(f"register_model({name!r}): {builder!r} is not callable")
        params, var_kw = _parameters(builder)
        resolved = dict(defaults)
        described = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
        }
        for key, value in described.items():
            if key in params and key not in resolved:
                resolved[key] = value
        unknown = [k for k in resolved if k not in params and not var_kw]
        if unknown:
            raise ValueError(
                f"register_model({name!r}): defaults {unknown} are not arguments of {builder!r}"
            )
        if name in _REGISTRY and _REGISTRY[name][1] is not builder:
            raise ValueError(f"register_model: name {name!r} is already registered")
        info = ModelInfo(
            name=name,
            family=family,
            task=task,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            description=description,
            paper=paper,
            defaults=resolved,
            role=role,
        )
        _REGISTRY[name] = (info, typing.cast(Callable[..., nn.Module], builder))
        return builder

    return decorate


def list_models(role: str | None = None) -> list[ModelInfo]:
    """All registered models sorted by name, optionally only one ``role`` ("critic", ...)."""
    infos = [_copy(info) for info, _ in _REGISTRY.values()]
    if role is not None:
        infos = [i for i in infos if i.role == role]
    return sorted(infos, key=lambda i: i.name)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; an unknown name raises ConfigError listing known ones."""
    return _copy(_lookup(name)[0])


def create_model(name: str, **config: Any) -> nn.Module:
    """Build the network registered as ``name`` with ``config`` overriding its defaults.

    Parameters
    ----------
    name : str
        A registered name (see :func:`list_models`).
    **config
        Constructor keyword arguments; each is checked against the signature and its
        type hints (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``Literal``).

    Returns
    -------
    torch.nn.Module
        The module, with ``mrenhance_name`` (``name``) and ``mrenhance_config`` (every
        constructor argument after merging: signature defaults < registry defaults <
        ``config``; a JSON-serialisable dict) set as plain attributes.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known names), unknown option, missing
        required option, a value of the wrong type, or a value the constructor rejects.
    """
    info, builder = _lookup(name)
    params, var_kw = _parameters(builder)
    hints = _type_hints(builder)
    for key in config:
        if key not in params and not var_kw:
            known = ", ".join(sorted(params)) or "none"
            raise ConfigError(f"model {name!r}: unknown option {key!r} (options: {known})")

    resolved: dict[str, Any] = {}
    for key, param in params.items():
        if param.default is not inspect.Parameter.empty:
            resolved[key] = param.default
    resolved.update(info.defaults)
    resolved.update(config)
    missing = [k for k in params if k not in resolved]
    if missing:
        raise ConfigError(f"model {name!r}: missing required option(s) {missing}")
    for key, value in list(resolved.items()):
        if key in hints:
            resolved[key] = _check_type(name, key, value, hints[key])
    try:
        json.dumps(resolved)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {name!r}: config is not JSON-serialisable ({err})") from err

    try:
        model = builder(**resolved)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {name!r}: {err}") from err
    model.mrenhance_name = name
    model.mrenhance_config = dict(resolved)
    return model


# --------------------------------------------------------------------------- helpers


def _copy(info: ModelInfo) -> ModelInfo:
    # the registry's dict must not be mutated through a returned ModelInfo
    return dataclasses.replace(info, defaults=dict(info.defaults))


def _lookup(name: str) -> tuple[ModelInfo, Callable[..., nn.Module]]:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"unknown model {name!r} (known models: {known})")
    return _REGISTRY[name]


def _parameters(builder: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """Keyword-usable parameters of a class constructor or factory, and whether **kwargs."""
    sig = inspect.signature(builder)
    params: dict[str, inspect.Parameter] = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            params[p.name] = p
    return params, var_kw


def _type_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # choice: unresolvable hints only disable the type check
        return {}


def _check_type(name: str, key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` in plain Python types or raise ConfigError naming ``key``.

    The check is the recipes' (:func:`mrenhance.config.coerce_value`, strict: no numeric
    strings; annotations it does not know pass unchecked).
    """
    from mrenhance.config import coerce_value

    try:
        return coerce_value(value, hint, key, f"model {name!r}", strict=True)
    except ConfigError:
        raise ConfigError(
            f"model {name!r}: option {key!r} must be {_hint_name(hint)}, "
            f"got {value!r} ({type(value).__name__})"
        ) from None


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
