"""The `mathtune` command line: one module per group of verbs, each calling library functions that the tests call
too. Library code returns results; these modules render them."""

from . import train  # noqa: F401, I001 (train first: `mathtune --help` lists verbs in the order they register)
from . import catalog, data, index, serve  # noqa: F401
from .common import PlainReporter, app, describe_os_error, handle_errors  # noqa: F401 (re-exported)
