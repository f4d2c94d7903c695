"""PyInstaller hook for python-gdcm (``import gdcm``): the SWIG module and GDCM's XML dictionaries.

``gdcm.py`` imports ``_gdcm.gdcmswig`` (which loads ``_gdcm/_gdcmswig.so`` and the ``libgdcm*``
libraries beside it; PyInstaller's binary analysis finds those) and points
``GDCM_RESOURCES_PATH`` at ``<gdcm.py folder>/_gdcm/XML``, which in a bundle is
``_internal/_gdcm/XML``. The command-line tools in ``_gdcm/`` (gdcmconv, gdcmdump, ...) are left
out: the viewer never runs them.
"""

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

hiddenimports = ["_gdcm", "_gdcm.gdcmswig"]
datas = collect_data_files("_gdcm", includes=["XML/*.xml"])
datas += copy_metadata("python-gdcm")
