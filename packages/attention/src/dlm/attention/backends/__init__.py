"""Backends in dispatch priority order: the first that supports the inputs runs them."""

from dlm.attention.backends.base import Backend
from dlm.attention.backends.flex import Flex
from dlm.attention.backends.sdpa import SDPA
from dlm.attention.backends.split import Split
from dlm.attention.backends.xformers_fmha import XFormers

BACKENDS: dict[str, Backend] = {b.name: b for b in (XFormers(), Flex(), Split(), SDPA())}

__all__ = ["BACKENDS", "SDPA", "Backend", "Flex", "Split", "XFormers"]
