"""StyleGAN's building blocks, usable on their own: layers with parameters, and parameter-free ops (`ganforge.nn.ops`).

The blocks are the ones ganforge's generators and discriminators are made of, with the official parameter names,
so a block's `state_dict()` matches the corresponding part of an official network. Each states the shapes it
reads and, given a wrong one, raises a `ShapeError` (a `ValueError`) naming the block, the shape it expects and
the one it got:

    ModulatedConv2d(in_channels=512, w_dim=512) expects x of shape [N, 512, H, W]; got [4, 256, 8, 8].

Example:
    ```python
    import torch
    from ganforge.nn import MappingNetwork, ModulatedConv2d

    mapping = MappingNetwork(z_dim=512, c_dim=0, w_dim=512, num_ws=None)
    w = mapping(torch.randn(4, 512), None)  # [4, 512]
    y = ModulatedConv2d(512, 256, w_dim=512)(torch.randn(4, 512, 8, 8), w)  # [4, 256, 8, 8]
    ```
"""

from ganforge.nn.inputs import ConstantInput, NoConstInput
from ganforge.nn.layers import AdaIN, MinibatchStd
from ganforge.nn.mapping import MappingNetwork
from ganforge.nn.shapes import ShapeError
from ganforge.nn.synthesis import ModulatedConv2d, NoiseInjection, SynthesisLayer, ToRGBLayer

__all__ = [
    "AdaIN",
    "ConstantInput",
    "MappingNetwork",
    "MinibatchStd",
    "ModulatedConv2d",
    "NoConstInput",
    "NoiseInjection",
    "ShapeError",
    "SynthesisLayer",
    "ToRGBLayer",
]
