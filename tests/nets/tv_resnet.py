"""torchvision's ResNet-18 with 10 classes, as a user would hand it to convscope: a function that returns
the module (torchvision's own `resnet18` needs the `num_classes` argument)."""

import torchvision


def resnet18_10():
    return torchvision.models.resnet18(num_classes=10)
