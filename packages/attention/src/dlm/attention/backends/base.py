"""What every attention backend declares: where it runs, on what, and why not elsewhere."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.attention.masks import Mask


class Backend:
    name: str = ""
    #: Devices the kernel runs on when asked for it by name.
    devices: frozenset[str] = frozenset()
    #: Devices where dispatch picks it on its own; None means every device in `devices`.
    auto_devices: frozenset[str] | None = None
    #: Devices where it has a backward pass; None means every device in `devices`.
    grad_devices: frozenset[str] | None = None
    dtypes: frozenset[torch.dtype] = frozenset()
    masks: tuple[type[Mask], ...] = (Mask,)

    def available(self) -> str | None:
        """None when the backend's library is importable here, else the reason it is not."""
        return None

    def mask_reason(self, mask: Mask) -> str | None:
        """None when the backend runs this mask, else why not."""
        if isinstance(mask, self.masks):
            return None
        return f"mask {type(mask).__name__} not in {[m.__name__ for m in self.masks]}"

    def input_reasons(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> list[str]:
        """Backend-specific limits on shapes and layouts; none by default."""
        return []

    def auto_reasons(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> list[str]:
        """Why dispatch should not pick this backend by itself although it could run the inputs
        (a performance policy; forcing the backend ignores it); none by default."""
        return []

    def not_supported_reasons(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Mask, forced: bool = False
    ) -> list[str]:
        """Every reason this backend cannot run (q, k, v, mask); empty when it can.

        `forced` is True when the caller named this backend: then `auto_devices` does not apply.
        """
        missing = self.available()
        if missing:
            return [missing]
        reasons = []
        device = q.device.type
        if device not in self.devices:
            reasons.append(f"device {device} not in {sorted(self.devices)}")
        elif not forced and self.auto_devices is not None and device not in self.auto_devices:
            reasons.append(
                f"only chosen automatically on {sorted(self.auto_devices)}; on {device} force it "
                f"with backend={self.name!r}"
            )
        if (
            device in self.devices
            and self.grad_devices is not None
            and device not in self.grad_devices
            and torch.is_grad_enabled()
            and (q.requires_grad or k.requires_grad or v.requires_grad)
        ):
            reasons.append(f"no backward on {device}, and the inputs require grad")
        if q.dtype not in self.dtypes:
            reasons.append(f"dtype {q.dtype} not in {sorted(str(d) for d in self.dtypes)}")
        mask_reason = self.mask_reason(mask)
        if mask_reason:
            reasons.append(mask_reason)
        reasons.extend(self.input_reasons(q, k, v, mask))
        if not forced and not reasons:
            reasons.extend(self.auto_reasons(q, k, v, mask))
        return reasons

    def describe(self) -> str:
        """One line for `python -m dlm.attention.info`: the masks it runs."""
        return "masks: " + ", ".join(m.__name__ for m in self.masks)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        raise NotImplementedError
