"""dlm.decoding: AR, block-diffusion, self-speculative and drafter-speculative decoders."""

from dlm.decoding import reference
from dlm.decoding.ar import ARDecoder
from dlm.decoding.block_diffusion import BlockCommit, BlockDiffusionDecoder, CausalCommit
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.layout import Layout, Segments
from dlm.decoding.sampling import Sampler
from dlm.decoding.self_speculative import SelfSpeculativeDecoder
from dlm.decoding.session import Decoding
from dlm.decoding.speculative import SpeculativeDecoder
from dlm.decoding.version import __version__

__all__ = [
    "ARDecoder",
    "BlockCommit",
    "BlockDiffusionDecoder",
    "CausalCommit",
    "Decoding",
    "FusedSelfSpeculativeDecoder",
    "Layout",
    "Sampler",
    "Segments",
    "SelfSpeculativeDecoder",
    "SpeculativeDecoder",
    "__version__",
    "reference",
]
