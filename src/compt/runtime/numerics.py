"""``portable_cpu=true``: CPU arithmetic that gives the same numbers on any x86-64 machine.

A CPU run's figures depend on the machine that makes them, not only on its seed: torch splits reductions over
as many threads as the machine has cores, and its own kernels, MKL and oneDNN each pick code for the
processor's vector width (AVX2, AVX-512), each summing in another order. A tiny model's few-shot run turns
those last-bit differences into different answers (the T5 demo at seed 1: sst2 90.6 with the machine's vector
kernels, 87.5 portable; its stsb -25.0 on 2 threads, -22.3 on one). Portable arithmetic takes one code path everywhere: one thread, torch's
unvectorised kernels (``ATEN_CPU_CAPABILITY=default``), MKL's compatible path (``MKL_CBWR=COMPATIBLE``) and no
oneDNN. It takes more CPU time (the demo: about 1.2 times one vectorised thread's, less than two threads
competing for a busy machine's cores) and leaves GPU arithmetic as it is; another torch build or processor
family (ARM) may still print other numbers.

:func:`set_portable_environment` must run before the process's first torch operation (torch fixes its kernels
then; ``train.py`` calls it right after composing the config); :func:`use_portable_cpu` completes it when the
run starts (in every rank) and refuses a process that already computed with other kernels.
"""

from __future__ import annotations

import os

from compt.errors import ConfigError

#: environment read once per process by torch (its kernels' vector width) and MKL (its code path)
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"}


def set_portable_environment() -> None:
    """Set :data:`PORTABLE_ENVIRONMENT` for this process and those it starts (DDP ranks)."""
    os.environ.update(PORTABLE_ENVIRONMENT)


def use_portable_cpu() -> None:
    """One thread and no oneDNN for this process, after :func:`set_portable_environment`.

    Raises:
        ConfigError: torch already runs vectorised kernels here (it computed before the environment was set,
            e.g. an earlier job of the same process without ``portable_cpu``).
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise ConfigError(
            f"portable_cpu=true cannot take effect: this process already runs torch's {capability} kernels "
            "(torch computed before the setting was read); run the job in a process of its own, or start it "
            "with ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1"
        )
    set_portable_environment()  # (already set by train.py; for a caller that started torch with it by hand)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
