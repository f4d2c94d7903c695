"""PyInstaller hook for pyjpegls (``import jpeg_ls``), pydicom's JPEG-LS decoder plugin."""

from PyInstaller.utils.hooks import copy_metadata

hiddenimports = ["_CharLS"]
datas = copy_metadata("pyjpegls")
