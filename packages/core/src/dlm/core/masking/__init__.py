"""Corruption strategies: which positions of a clean batch become [MASK], with loss weights.

Call a strategy with (tokens, sample_index, epoch, block_size, mask_id, seed); it returns
`Corrupted(tokens, mask, weights)`. Every draw derives from (seed, sample index, epoch).
"""

from dlm.core.masking.base import Corrupted, Corruption, sample_generator, sample_seed
from dlm.core.masking.fixed_ratio import FixedRatio
from dlm.core.masking.position_dependent import PositionDependent
from dlm.core.masking.uniform import Uniform
from dlm.core.masking.whole_blocks import WholeBlocks

__all__ = [
    "Corrupted",
    "Corruption",
    "FixedRatio",
    "PositionDependent",
    "Uniform",
    "WholeBlocks",
    "sample_generator",
    "sample_seed",
]
