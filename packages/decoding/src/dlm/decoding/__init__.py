"""dlm.decoding: AR, block-diffusion, self-speculative and drafter-speculative decoders, and the
one test-time Evaluation of them."""

from dlm.attention import Segments
from dlm.decoding.ar import ARDecoder
from dlm.decoding.base import Decoding
from dlm.decoding.block_diffusion import BlockDiffusionDecoder
from dlm.decoding.drafter import DrafterSpeculativeDecoder
from dlm.decoding.evaluation import Evaluation
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.layout import Layout
from dlm.decoding.sampling import Sampler
from dlm.decoding.self_speculative import SelfSpeculativeDecoder
from dlm.decoding.version import __version__

__all__ = [
    "ARDecoder",
    "BlockDiffusionDecoder",
    "Decoding",
    "DrafterSpeculativeDecoder",
    "Evaluation",
    "FusedSelfSpeculativeDecoder",
    "Layout",
    "Sampler",
    "Segments",
    "SelfSpeculativeDecoder",
    "__version__",
]
