"""xent's Hydra launcher plugin (Hydra instantiates launchers only from `hydra_plugins`)."""
