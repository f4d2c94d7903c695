"""viewer.state: Qt-free view state (see docs/ARCHITECTURE.md).

``view_state`` (orientation, invert, window, overlay visibility with change notification),
``display_plan`` (the array + levels fast path of the canvas and per-image preparation) and
``browse_tree`` (the browser's rows, built off the GUI thread).
"""
