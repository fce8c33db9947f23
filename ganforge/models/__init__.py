"""Networks built from a Plan: StyleGAN2 G/D and the DCGAN family."""

from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator, MappingNetwork, SynthesisNetwork

__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork"]
