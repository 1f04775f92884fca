"""The model zoo: every name builds, runs forward, has the usual CIFAR parameter count."""

from __future__ import annotations

import textwrap

import pytest
import torch

from fasdl.errors import InvalidInput
from fasdl.models import MODEL_NAMES, build_model, check_model_name, count_parameters

# Parameter counts of the common CIFAR-10 implementations (10 classes, 3x32x32 inputs).
CIFAR_PARAMS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet50": 23_520_842,
    "resnet101": 42_512_970,
    "mobilenetv2": 2_296_922,
    "vgg11": 9_231_114,
    "vgg16": 14_728_266,
}


def test_names() -> None:
    assert set(MODEL_NAMES) == {
        "resnet8",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "mobilenetv2",
        "vgg11",
        "vgg16",
        "cnn",
        "mlp",
    }


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_cifar_shape_and_parameter_count(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    if name in CIFAR_PARAMS:
        assert count_parameters(model) == CIFAR_PARAMS[name]


# resnet101 is resnet50 with a longer third stage: left out to keep the suite fast.
@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "resnet101"])
def test_forward_digits_shape_other_head(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, input_shape=(1, 8, 8))
    with torch.no_grad():
        out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", ["cnn", "vgg11", "resnet18"])
def test_other_sizes(name: str) -> None:
    model = build_model(name, num_classes=3, input_shape=(3, 48, 40)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 40)).shape == (1, 3)


def test_small_models_are_small_and_cnn_has_buffers() -> None:
    cnn = build_model("cnn")
    assert count_parameters(cnn) < 100_000
    assert any(name.endswith("running_mean") for name, _ in cnn.named_buffers())
    assert count_parameters(build_model("mlp", input_shape=(1, 8, 8))) < count_parameters(
        build_model("mlp")
    )


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_deterministic_given_seed(name: str) -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(name).state_dict()

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_vgg_keeps_state_dict_keys_across_input_sizes() -> None:
    big = build_model("vgg11").state_dict()
    small = build_model("vgg11", input_shape=(3, 8, 8)).state_dict()
    assert list(big) == list(small)


@pytest.mark.parametrize("bad", ["resnet", "ResNet18", "", "vgg19"])
def test_unknown_name(bad: str) -> None:
    with pytest.raises(InvalidInput) as e:
        check_model_name(bad)
    assert e.value.field == "model"
    assert "known:" in e.value.fix and "resnet18" in e.value.fix
    with pytest.raises(InvalidInput):
        build_model(bad)


@pytest.mark.parametrize(
    ("num_classes", "input_shape"),
    [(0, (3, 32, 32)), (10, (32, 32)), (10, (3, 0, 32)), (True, (3, 8, 8))],
)
def test_bad_arguments(num_classes: int, input_shape: tuple) -> None:
    with pytest.raises(InvalidInput):
        build_model("cnn", num_classes=num_classes, input_shape=input_shape)


@pytest.fixture
def user_models(tmp_path, monkeypatch) -> str:
    (tmp_path / "my_zoo_mod.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn

            def full(num_classes, input_shape):
                c, h, w = input_shape
                return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))

            def classes_only(num_classes=10):
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

            def nothing():
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(4))

            def anything(**kwargs):
                return nn.Sequential(nn.Flatten(), nn.Linear(12, kwargs["num_classes"]))

            def not_a_module(num_classes):
                return num_classes

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_zoo_mod"


def test_user_model(user_models: str) -> None:
    m = build_model(f"{user_models}:full", num_classes=5, input_shape=(1, 2, 3))
    assert m(torch.randn(2, 1, 2, 3)).shape == (2, 5)
    assert build_model(f"{user_models}:classes_only", num_classes=6)(
        torch.randn(2, 3, 4, 4)
    ).shape == (2, 6)
    assert build_model(f"{user_models}:nothing")(torch.randn(2, 3, 4, 4)).shape == (2, 4)
    m = build_model(f"{user_models}:anything", num_classes=3, input_shape=(3, 2, 2))
    assert m(torch.randn(2, 3, 2, 2)).shape == (2, 3)
    check_model_name(f"{user_models}:full")


@pytest.mark.parametrize(
    ("suffix", "words"),
    [
        (":not_a_module", "not a torch.nn.Module"),
        (":missing", "no function 'missing'"),
        (":NOT_CALLABLE", "no function"),
        (":", "not of the form"),
        (":full:extra", "not of the form"),
    ],
)
def test_user_model_errors(user_models: str, suffix: str, words: str) -> None:
    with pytest.raises(InvalidInput) as e:
        build_model(user_models + suffix)
    assert e.value.field == "model"
    assert words in str(e.value)


def test_user_model_unimportable() -> None:
    with pytest.raises(InvalidInput) as e:
        check_model_name("no_such_package_xyz.models:net")
    assert "cannot import" in str(e.value) and "PYTHONPATH" in e.value.fix
