"""Count the FLOPs of arbitrary torch code at the dispatch level.

``FlopCounter`` is a ``TorchDispatchMode`` that sees every aten op after autograd has
decomposed it, including the ops that ``torch.autograd.grad(..., create_graph=True)`` runs for
a gradient penalty and the ops of an ordinary ``backward``. Ops with a formula in
``torch.utils.flop_counter.flop_registry`` (matmuls, convolutions and their backward,
attention) are counted with torch's own formulas; everything else (elementwise ops,
reductions, optimizer updates) counts zero, as in ``FlopCounterMode``. Unlike
``FlopCounterMode`` it tracks no modules, so it works wherever a mode works. Pure torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class FlopCounter(TorchDispatchMode):
    """Adds up the FLOPs of every op with a registered formula while the mode is active.

    Example::

        with FlopCounter() as counter:
            loss = model(x).sum()
            loss.backward()
        counter.total  # forward + backward FLOPs

    Attributes:
        total: FLOPs counted so far (a multiply-add counts 2).
        by_op: FLOPs per op packet name (``"aten.convolution"``, ``"aten.mm"``, ...).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_op: Counter[str] = Counter()

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = getattr(func, "_overloadpacket", func)
        formula = flop_registry.get(packet)
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            self.total += flops
            self.by_op[str(packet)] += flops
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward, backward and double backward alike).

    Args:
        fn: Code to run once, with no arguments; its result is discarded.

    Returns:
        The FLOPs of the matmul, convolution and attention ops it ran.
    """
    with FlopCounter() as counter:
        fn()
    return counter.total
