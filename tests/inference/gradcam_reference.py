"""Load the ``grad-cam`` package's GradCAMPlusPlus / GradCAM without torchvision.

``pytorch_grad_cam/__init__.py`` imports every CAM variant, and ``utils/image.py`` and
``utils/model_targets.py`` import torchvision, matplotlib and scikit-learn at module level,
though none of them is used on the GradCAM / GradCAMPlusPlus path. torchvision must not be
installed beside this torch build, so we bypass the two package ``__init__`` files and give
those three libraries placeholder modules whose attributes raise if anything ever calls them.
The CAM code that runs is the package's own, unmodified.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

_PLACEHOLDERS = {
    "torchvision": [],
    "torchvision.transforms": ["Compose", "Normalize", "ToTensor"],
    "matplotlib": [],
    "matplotlib.pyplot": [],
    "matplotlib.lines": ["Line2D"],
    "sklearn": [],
    "sklearn.decomposition": ["KernelPCA"],
}


class _Unavailable:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"{self.name} is not installed (placeholder for the grad-cam package)")


@functools.lru_cache(maxsize=1)
def load_grad_cam() -> types.SimpleNamespace:
    """Return ``GradCAMPlusPlus``, ``GradCAM`` and ``ClassifierOutputTarget`` from the package.

    Raises ImportError when the package (or ttach, which it needs) is not installed.
    """
    spec = importlib.util.find_spec("pytorch_grad_cam")
    if spec is None or spec.origin is None:
        raise ImportError("grad-cam is not installed (make install: pip install --no-deps grad-cam ttach)")
    importlib.import_module("ttach")
    root = Path(spec.origin).parent
    saved = {name: sys.modules.get(name) for name in _PLACEHOLDERS}
    for name, attrs in _PLACEHOLDERS.items():
        if name in sys.modules and importlib.util.find_spec(name.split(".")[0]) is not None:
            continue  # the real library is installed: use it
        module = types.ModuleType(name)
        for attr in attrs:
            setattr(module, attr, _Unavailable(f"{name}.{attr}"))
        sys.modules[name] = module
    for pkg, path in (("pytorch_grad_cam", root), ("pytorch_grad_cam.utils", root / "utils")):
        if pkg not in sys.modules:
            module = types.ModuleType(pkg)
            module.__path__ = [str(path)]
            sys.modules[pkg] = module
    try:
        from pytorch_grad_cam.grad_cam import GradCAM
        from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    finally:
        # Placeholders only had to exist while the package's modules were imported.
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return types.SimpleNamespace(
        GradCAMPlusPlus=GradCAMPlusPlus, GradCAM=GradCAM, ClassifierOutputTarget=ClassifierOutputTarget
    )
