"""radview: an offline radiograph viewer with on-device AI. Research use, not for diagnosis."""

import logging as _logging

__version__ = "0.1.0"

RESEARCH_NOTICE = "Research use only - not for diagnosis. Not a medical device."

# Library practice: without this, a process that never set up the support log (a decode worker,
# a test) would print our warnings through logging's last-resort handler, whose traceback
# format includes exception messages. The support log (viewer.services.support_log) adds the
# real handlers.
for _name in ("viewer", "radview"):
    _logging.getLogger(_name).addHandler(_logging.NullHandler())
