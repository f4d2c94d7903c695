"""viewer.ui: the only layer that imports PySide6 and pyqtgraph (see docs/ARCHITECTURE.md).

Map
---
- ``main_window``: assembles docks, menus and controllers; no logic of its own.
- ``library_controller`` (scans) and ``image_controller`` (decode + prepare): QObjects without
  widgets; all work runs through ``task_bridge.TaskBridge``.
- ``canvas`` + ``canvas_layers``: pyqtgraph view, fast window/level through image levels,
  ruler, mask/heatmap layers; ``window_panel``: presets, C/W fields, histogram.
- ``viewports``: the 1x1/1x2/2x2 grid of canvases (the active one is ``MainWindow.canvas``),
  linked zoom/pan and window, the different-patients warning; ``progressive``: the
  reduced-resolution stand-in shown until a cold JPEG 2000 / JPEG film's full decode arrives
  (``viewer.state.provisional``).
- ``measure_items`` + ``measurements_dock``: distance, angle, Cobb, ROI, arrow, text and
  calibration items, their list and persistence (geometry and statistics in
  ``viewer.core.measure``, per-image state in ``viewer.state.measurements``).
- ``browser``, ``thumbnails``, ``header_dock``, ``load_report``, ``status_bar``: the docks.
- ``settings`` (QSettings), ``actions`` (shortcut table), ``demo`` (headless demo and
  screenshots). Compressed decodes go through ``viewer.services.decode_pool`` (process pool).
- AI (``install_ai`` in ``ai_features``, which reaches the window through the ``AiWindow``
  protocol): ``analysis_controller`` (inference pool, stale-result dropping, batches; its
  ``session`` is the Qt-free ``viewer.services.ai_session.AiSession``), ``results_panel``
  (confidence bands with text and icon), ``overlay_panel``, ``model_input_view`` ("what the
  model saw"), ``history_dock``, ``model_info`` ("About this model", unavailable models),
  ``export_actions`` (PNG as seen; CSV/JSON and DICOM SEG/SC are
  ``viewer.services.ai_exports``), ``ai_demo`` (analysis in the headless demo).

Threading (where this differs from the architecture guide, and why)
-------------------------------------------------------------------
Workers never emit Qt signals: ``TaskBridge`` collects outcomes in a queue that a 5 ms GUI
timer drains while work is pending. PySide6 6.12.0 on Python 3.11 corrupted the refcount of
``True`` on every Python-signal emission (pinned away in pyproject), and cross-thread emission
of Python objects has a history of crashes (PYSIDE-3124); the queue keeps every shiboken call on
the GUI thread for ~5 ms of latency. JPEG 2000 / JPEG-LS / JPEG decoders hold the GIL for the
whole decode, so compressed images are decoded in a spawn process pool
(:class:`viewer.services.decode_pool.DecodePool`, created by ``viewer.app``).

GUI-thread stalls (target <= 50 ms, ``bench.gui_probe`` / ``bench.gui_batch``; see
docs/ARCHITECTURE.md): the start-up heap is frozen out of the cyclic GC (a full collection in a
worker holds the GIL for 100+ ms); bridge, inference and decode workers run at nice +10 below
the GUI thread; the histogram is drawn on a later turn than the image; the thumbnail model
announces new icons every 50 ms instead of one repaint per icon.

Extension points for the AI features
------------------------------------
- ``MainWindow.add_side_panel(name, title, widget)``: a dock in the right area (results panel),
  its widget in a vertical scroll area.
- ``ImageCanvas.set_mask(mask, opacity)`` / ``set_heatmap(heatmap, opacity)``: overlay layers
  that follow rotation and flips.
- ``ThumbnailModel.set_badge(record.key, text)``: a short text under a thumbnail.
- ``MainWindow.sig_image_displayed(record, PreparedImage)``: the image now shown.
"""
