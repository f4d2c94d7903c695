"""radview: an offline radiograph viewer with on-device AI. Research use, not for diagnosis."""

__version__ = "0.1.0"

RESEARCH_NOTICE = "Research use only - not for diagnosis. Not a medical device."
