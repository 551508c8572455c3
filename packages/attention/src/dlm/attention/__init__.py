"""dlm.attention: mask objects, attention backends and the dispatch that picks one."""

from dlm.attention.dispatch import attend, select
from dlm.attention.masks import (
    And,
    Bidirectional,
    BlockCausal,
    BlockDiffusion,
    Causal,
    Draft,
    Mask,
    Or,
    TriMode,
    Verify,
)
from dlm.attention.version import __version__

__all__ = [
    "And",
    "Bidirectional",
    "BlockCausal",
    "BlockDiffusion",
    "Causal",
    "Draft",
    "Mask",
    "Or",
    "TriMode",
    "Verify",
    "__version__",
    "attend",
    "select",
]
