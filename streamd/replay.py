"""The import path of `streamd.client.replay` before 0.2, kept so that code written against it goes on working."""

from streamd.client.replay import *  # noqa: F403
from streamd.client.replay import __all__ as __all__
