"""Models by name, and a user's own model as ``"package.module:function"``.

Every builder takes ``num_classes`` and ``input_shape`` (C, H, W). Construction draws only from
torch's global generator, so ``torch.manual_seed(s)`` before ``build_model`` fixes the weights.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from fasdl.errors import InvalidInput
from fasdl.models import mobilenet, resnet, small, vgg
from fasdl.validate import whole_number

Shape = tuple[int, int, int]

_BUILDERS: dict[str, Callable[[int, Shape], nn.Module]] = {
    "resnet8": lambda k, s: resnet.resnet8(k, s[0]),
    "resnet18": lambda k, s: resnet.resnet18(k, s[0]),
    "resnet34": lambda k, s: resnet.resnet34(k, s[0]),
    "resnet50": lambda k, s: resnet.resnet50(k, s[0]),
    "resnet101": lambda k, s: resnet.resnet101(k, s[0]),
    "mobilenetv2": lambda k, s: mobilenet.mobilenetv2(k, s[0]),
    "vgg11": lambda k, s: vgg.vgg11(k, s),
    "vgg16": lambda k, s: vgg.vgg16(k, s),
    "cnn": lambda k, s: small.SmallCNN(k, s),
    "mlp": lambda k, s: small.MLP(k, s),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
_KNOWN = f"known: {', '.join(MODEL_NAMES)}, or package.module:function"


def check_model_name(name: str) -> None:
    """Raise ``InvalidInput("model", ...)`` unless ``name`` is a built-in model or an importable
    ``module:function``. Imports the user's module (nothing else is run)."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("model", f"{name!r} is not a model name", _KNOWN)
    if ":" in name:
        _user_function(name)
    elif name not in _BUILDERS:
        raise InvalidInput("model", f"unknown model {name!r}", _KNOWN)


def build_model(name: str, *, num_classes: int = 10, input_shape: Shape = (3, 32, 32)) -> nn.Module:
    """Build a fresh model; seed torch first (``torch.manual_seed``) for reproducible weights."""
    check_model_name(name)
    whole_number(num_classes, "num_classes", minimum=1, fix="e.g. 10")
    shape = _check_shape(input_shape)
    if ":" not in name:
        return _BUILDERS[name](num_classes, shape)
    fn = _user_function(name)
    model = fn(**_accepted_kwargs(fn, num_classes=num_classes, input_shape=shape))
    if not isinstance(model, nn.Module):
        raise InvalidInput(
            "model",
            f"{name} returned a {type(model).__name__}, not a torch.nn.Module",
            "return the model",
        )
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters (not buffers)."""
    return sum(p.numel() for p in model.parameters())


def _check_shape(input_shape: Shape) -> Shape:
    if not isinstance(input_shape, tuple | list) or len(input_shape) != 3:
        raise InvalidInput(
            "input_shape", f"{input_shape!r} is not (channels, height, width)", "e.g. (3, 32, 32)"
        )
    c, h, w = (
        whole_number(v, "input_shape", minimum=1, fix="(channels, height, width), e.g. (3, 32, 32)")
        for v in input_shape
    )
    return (c, h, w)


def _user_function(name: str) -> Callable[..., object]:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr or ":" in attr:
        raise InvalidInput("model", f"{name!r} is not of the form package.module:function", _KNOWN)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidInput(
            "model",
            f"cannot import module {module_name!r} for model {name!r}: {e}",
            "make it importable where fasdl and its workers run (e.g. PYTHONPATH=.)",
        ) from e
    fn: object = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise InvalidInput("model", f"module {module_name!r} has no function {attr!r}", _KNOWN)
    return fn


def _accepted_kwargs(fn: Callable[..., object], **kwargs: object) -> dict[str, object]:
    """The subset of ``kwargs`` that ``fn`` accepts by keyword (all of them if it takes ``**kw``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature: pass nothing
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    keyword_ok = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: v for k, v in kwargs.items() if k in params and params[k].kind in keyword_ok}
