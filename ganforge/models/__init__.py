"""Networks built from a Plan: StyleGAN2 G/D and the DCGAN family."""

from torch import nn

from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator, MappingNetwork, SynthesisNetwork
from ganforge.plan import Plan

__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork", "is_stylegan"]


def is_stylegan(net: nn.Module) -> bool:
    """The network was built from a StyleGAN2 Plan (mapping, synthesis, w_avg, truncation), as its `plan.family`
    says; False for the DCGAN family and for modules that are not ganforge networks (called as G(z, c))."""
    plan = getattr(net, "plan", None)
    return isinstance(plan, Plan) and plan.family == "stylegan2"
