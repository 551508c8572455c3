"""What every attention backend declares: where it runs, on what, and why not elsewhere."""

from __future__ import annotations

from torch import Tensor

from dlm.attention.masks import Mask


class Backend:
    name: str = ""
    devices: frozenset[str] = frozenset()
    dtypes: frozenset = frozenset()
    masks: tuple[type[Mask], ...] = (Mask,)

    def available(self) -> str | None:
        """None when the backend's library is importable here, else the reason it is not."""
        return None

    def not_supported_reasons(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> list[str]:
        reasons = []
        missing = self.available()
        if missing:
            return [missing]
        if q.device.type not in self.devices:
            reasons.append(f"device {q.device.type} not in {sorted(self.devices)}")
        if q.dtype not in self.dtypes:
            reasons.append(f"dtype {q.dtype} not in {sorted(str(d) for d in self.dtypes)}")
        if not isinstance(mask, self.masks):
            reasons.append(f"mask {type(mask).__name__} not in {[m.__name__ for m in self.masks]}")
        return reasons

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        raise NotImplementedError
