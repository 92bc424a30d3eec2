"""LightningModules, one per task shape: classify (and, later, distill, flow, tta)."""
