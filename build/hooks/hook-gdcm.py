"""PyInstaller hook for python-gdcm (``import gdcm``): the SWIG module, not the tools or XML.

``gdcm.py`` imports ``_gdcm.gdcmswig`` (which loads ``_gdcm/_gdcmswig.so`` and the ``libgdcm*``
libraries beside it; PyInstaller's binary analysis finds those). Left out: the command-line
tools in ``_gdcm/`` (gdcmconv, gdcmdump, ...) which the viewer never runs, and GDCM's XML
resources (Part3/4/6/7 dictionaries, CSA header, UIDs: 3.5 MB), which serve IOD validation and
dictionary dumps; pixel decoding uses the dictionary compiled into libgdcmDICT (the frozen
self-test decodes the JPEG Lossless files, which only gdcm serves here, without them).
``RADVIEW_GDCM_XML=1`` at build time collects them into ``_internal/_gdcm/XML``, where
``gdcm.py`` points ``GDCM_RESOURCES_PATH``.
"""

import os

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

hiddenimports = ["_gdcm", "_gdcm.gdcmswig"]
datas = copy_metadata("python-gdcm")
if os.environ.get("RADVIEW_GDCM_XML"):
    datas += collect_data_files("_gdcm", includes=["XML/*.xml"])
