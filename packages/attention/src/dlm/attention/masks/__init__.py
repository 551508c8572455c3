from dlm.attention.masks.base import Mask
from dlm.attention.masks.bidirectional import Bidirectional
from dlm.attention.masks.block_causal import BlockCausal
from dlm.attention.masks.block_diffusion import BlockDiffusion, TriMode
from dlm.attention.masks.causal import Causal
from dlm.attention.masks.combinators import And, Or
from dlm.attention.masks.document import SameDocument
from dlm.attention.masks.speculative import Draft, Verify

__all__ = [
    "And",
    "Bidirectional",
    "BlockCausal",
    "BlockDiffusion",
    "Causal",
    "Draft",
    "Mask",
    "Or",
    "SameDocument",
    "TriMode",
    "Verify",
]
