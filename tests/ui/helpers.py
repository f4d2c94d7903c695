"""Small helpers for UI tests: synthetic radiographs and waiting for a displayed image."""

from __future__ import annotations

from typing import Any

import numpy as np

from viewer.core.radiograph import VOI, ModalityLUT, Radiograph


def gradient_radiograph(
    rows: int = 64, cols: int = 80, photometric: str = "MONOCHROME2",
    slope: float = 1.0, intercept: float = 0.0, spacing: tuple[float, float] | None = (0.2, 0.25),
    spacing_kind: str | None = "ImagerPixelSpacing", vois: tuple[VOI, ...] = (),
) -> Radiograph:
    """A 12-bit ramp (left dark, right bright in stored values) with a bright square."""
    ramp = np.tile(np.linspace(0, 4000, cols, dtype=np.float64), (rows, 1))
    ramp[rows // 4: rows // 2, cols // 4: cols // 2] = 4095
    return Radiograph(
        pixels=ramp.astype(np.uint16), photometric=photometric, bits_stored=12,
        modality_lut=ModalityLUT(slope=slope, intercept=intercept),
        vois=vois, spacing_mm=spacing, spacing_kind=spacing_kind,  # type: ignore[arg-type]
        modality="CR", body_part="CHEST",
    )


def open_and_wait(qtbot: Any, window: Any, paths: list[str], timeout: int = 20000) -> None:
    """Open paths and wait until the scan has finished and the first image is displayed."""
    with qtbot.waitSignal(window.sig_image_displayed, timeout=timeout):
        window.open_paths(paths)


def shown_canvas(qtbot: Any, width: int, height: int) -> Any:
    """An :class:`~viewer.ui.canvas.ImageCanvas` of ``width`` x ``height``, shown and exposed."""
    import pyqtgraph as pg

    from viewer.state.view_state import ViewState
    from viewer.ui.canvas import ImageCanvas

    pg.setConfigOptions(imageAxisOrder="row-major")
    widget = ImageCanvas(ViewState())
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget
