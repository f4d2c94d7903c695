"""viewer.dicom layer (see docs/ARCHITECTURE.md)."""
