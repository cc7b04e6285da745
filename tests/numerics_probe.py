"""A small forward and backward pass (matmul, layer norm, log-softmax, reductions), printed as a hash of its
bits: ``python tests/numerics_probe.py portable|plain``. tests/test_numerics.py runs it under the settings of
two different machines."""

from __future__ import annotations

import hashlib
import sys

if __name__ == "__main__":
    portable = sys.argv[1] == "portable"
    if portable:  # before torch computes anything, as train.py does
        from compt.runtime.numerics import set_portable_environment

        set_portable_environment()
    import torch

    if portable:
        from compt.runtime.numerics import use_portable_cpu

        use_portable_cpu()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 257, generator=generator)
    w = torch.randn(257, 129, generator=generator, requires_grad=True)
    h = torch.nn.functional.layer_norm(x @ w, (129,))
    loss = torch.log_softmax(h, -1).sum() + torch.tanh(h).mean()
    loss.backward()
    print(hashlib.sha256(loss.detach().numpy().tobytes() + w.grad.numpy().tobytes()).hexdigest())
