"""Data modules: each keeps its splits in memory and owns its download and format checks."""
