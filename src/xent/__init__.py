"""xent: the cross-entropy family of training losses, run through Hydra and Lightning.

Importing the package caps torch's CPU kernels at AVX2 (cpu_kernels.py: one seed, one set of
numbers on every x86-64 CPU), before anything runs a torch operation, and registers the OmegaConf
resolvers its configs use, so that every process that composes or runs a config has them (the
CLI, a submitit job, a test).
"""

from xent.cpu_kernels import cap_cpu_kernels_at_avx2

cap_cpu_kernels_at_avx2()

from xent.runner.rundir import register_resolvers  # noqa: E402  (after the cap: it imports torch)

register_resolvers()
