"""viewer.inference layer (see docs/ARCHITECTURE.md)."""
