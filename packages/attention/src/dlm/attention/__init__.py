"""dlm.attention: mask objects, attention backends and the dispatch that picks one."""

from dlm.attention.backends import BACKENDS, Backend
from dlm.attention.dispatch import ENV_VAR, attend, refusals, select
from dlm.attention.masks import (
    And,
    Bidirectional,
    BlockCausal,
    BlockDiffusion,
    Causal,
    Dense,
    Draft,
    Mask,
    Or,
    SameDocument,
    Segments,
    TriMode,
    TriModeNoisy,
    Verify,
)
from dlm.attention.version import __version__

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "And",
    "Backend",
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
    "__version__",
    "attend",
    "refusals",
    "select",
]
