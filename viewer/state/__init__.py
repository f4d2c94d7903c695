"""viewer.state layer (see docs/ARCHITECTURE.md)."""
