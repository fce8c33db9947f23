"""Networks built from a Plan: StyleGAN2 G/D, the StyleGAN3 G (T and R) and the DCGAN family."""

from torch import nn

from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator, MappingNetwork, SynthesisNetwork
from ganforge.models.stylegan3 import StyleGAN3Generator, StyleGAN3Synthesis, plan_from_sg3_kwargs
from ganforge.plan import Plan

__all__ = [
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "StyleGAN3Generator",
    "StyleGAN3Synthesis",
    "SynthesisNetwork",
    "is_stylegan",
    "plan_from_sg3_kwargs",
]


def is_stylegan(net: nn.Module) -> bool:
    """The network was built from a StyleGAN2 or StyleGAN3 Plan (mapping, synthesis, w_avg, truncation,
    noise_mode), as its `plan.family` says; False for the DCGAN family and for modules that are not ganforge
    networks (called as G(z, c))."""
    plan = getattr(net, "plan", None)
    return isinstance(plan, Plan) and (plan.family == "stylegan2" or plan.is_sg3)
