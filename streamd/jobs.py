"""The import path of `streamd.client.jobs` before 0.2, kept so that code written against it goes on working."""

from streamd.client.jobs import *  # noqa: F403
from streamd.client.jobs import __all__ as __all__
