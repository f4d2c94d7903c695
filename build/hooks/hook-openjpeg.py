"""PyInstaller hook for pylibjpeg-openjpeg (``import openjpeg``): keep its entry-point metadata."""

from PyInstaller.utils.hooks import copy_metadata

datas = copy_metadata("pylibjpeg-openjpeg")
