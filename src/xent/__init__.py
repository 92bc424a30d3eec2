"""xent: the cross-entropy family of training losses, run through Hydra and Lightning.

Importing the package registers the OmegaConf resolvers its configs use, so that every process
that composes or runs a config has them (the CLI, a submitit job, a test).
"""

from xent.runner.rundir import register_resolvers

register_resolvers()
