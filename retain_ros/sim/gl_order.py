"""Load the native libraries that carry their own LLVM before the process makes its first offscreen GL context.

Why: Mesa's CPU renderer (llvmpipe, behind MUJOCO_GL=egl or osmesa) loads the system's LLVM when the first context is
made. Triton, which PyPI's (CUDA) build of torch installs and which torch._dynamo imports (model construction reaches
it through torch.utils._device), links a second LLVM into libtriton.so, and loading that one after Mesa's kills the
process with SIGSEGV. The other order is fine, and TORCHDYNAMO_DISABLE does not help because the import still happens.
So `TabletopEnv`, the only place the package makes a GL context, calls `load_before_gl()` first: every process that
renders (`make demo`, `retain-sim collect`, `retain-eval sim`, the simulated robot node, tests, and whatever rolls a
policy out in the simulator next) is safe in either order. Without triton (the CPU-only torch) it costs one
`find_spec`, and a process that renders but never uses torch pays only the import of triton (0.2-0.4 s here), not torch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging

log = logging.getLogger(__name__)

# Python packages whose native library links its own LLVM and which torch's compiled stack imports.
LLVM_PACKAGES = ("triton",)


@functools.cache
def load_before_gl() -> tuple[str, ...]:
    """Import every installed package of `LLVM_PACKAGES`, once per process; call it before making a GL context.

    Returns:
        The names imported (empty when none is installed). One that fails to import is skipped: torch then cannot
        load it later either.
    """
    loaded = []
    for name in LLVM_PACKAGES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.debug("%s is installed but does not import (%s); torch will not load it either", name, exc)
            continue
        loaded.append(name)
    return tuple(loaded)
