"""ganforge: StyleGAN2-family GANs at any resolution, with the checks that explain shape mismatches."""

from ganforge.config import PRESETS
from ganforge.plan import Plan, PlanError, make_plan

__version__ = "0.1.0"

__all__ = ["PRESETS", "Plan", "PlanError", "make_plan", "build_generator", "build_discriminator", "__version__"]


def build_generator(plan: Plan):
    """A generator for the Plan (StyleGAN2 or DCGAN)."""
    if plan.family == "dcgan":
        from ganforge.models.dcgan import DCGANGenerator

        return DCGANGenerator(plan)
    from ganforge.models.generator import Generator

    return Generator(plan)


def build_discriminator(plan: Plan, patch: bool = False):
    """A discriminator for the Plan; patch=True gives the fully convolutional PatchGAN (DCGAN family)."""
    if plan.family == "dcgan":
        from ganforge.models.dcgan import DCGANDiscriminator, PatchDiscriminator

        return PatchDiscriminator(plan) if patch else DCGANDiscriminator(plan)
    from ganforge.models.discriminator import Discriminator

    return Discriminator(plan)
