from dlm.attention.masks.base import Mask
from dlm.attention.masks.bidirectional import Bidirectional
from dlm.attention.masks.block_causal import BlockCausal
from dlm.attention.masks.block_diffusion import BlockDiffusion
from dlm.attention.masks.causal import Causal
from dlm.attention.masks.combinators import And, Or
from dlm.attention.masks.dense import Dense
from dlm.attention.masks.document import SameDocument
from dlm.attention.masks.segments import Segments
from dlm.attention.masks.speculative import Draft, Verify
from dlm.attention.masks.trimode import TriMode, TriModeNoisy

__all__ = [
    "And",
    "Bidirectional",
    "BlockCausal",
    "BlockDiffusion",
    "Causal",
    "Dense",
    "Draft",
    "Mask",
    "Or",
    "SameDocument",
    "Segments",
    "TriMode",
    "TriModeNoisy",
    "Verify",
]
