"""PyInstaller hook for pylibjpeg: its decoder plugins are found through entry points.

``pylibjpeg.utils.get_pixel_data_decoders`` asks ``importlib.metadata.entry_points`` for the groups
``pylibjpeg.pixel_data_decoders`` etc., and pydicom's pylibjpeg decoder checks versions with
``importlib.metadata``. A bundle without the plugins' ``*.dist-info`` therefore decodes nothing
through pylibjpeg, silently. We copy the metadata of pylibjpeg and of every plugin that is
installed, and import the plugin modules explicitly (nothing imports them by name).

Only permissive plugins are collected: pylibjpeg-libjpeg (GPL-3.0) is excluded in viewer.spec
even when it is installed in the build environment.
"""

from importlib import metadata

from PyInstaller.utils.hooks import copy_metadata

# distribution -> top-level module that its entry points name
PERMISSIVE_PLUGINS = {"pylibjpeg-openjpeg": "openjpeg", "pylibjpeg-rle": "rle"}

datas = copy_metadata("pylibjpeg")
hiddenimports = []
for dist, module in PERMISSIVE_PLUGINS.items():
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        continue
    datas += copy_metadata(dist)
    hiddenimports.append(module)
