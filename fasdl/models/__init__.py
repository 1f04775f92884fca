"""The model zoo: CIFAR-style ResNets, MobileNetV2 and VGG, a small CNN and an MLP, by name.

``build_model("resnet18", num_classes=10, input_shape=(3, 32, 32))``, or a user's own model as
``build_model("mypkg.models:make_net")`` (called with ``num_classes`` and ``input_shape`` if it
takes them).
"""

from fasdl.models.registry import MODEL_NAMES, build_model, check_model_name, count_parameters

__all__ = ["MODEL_NAMES", "build_model", "check_model_name", "count_parameters"]
