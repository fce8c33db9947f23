"""The one base class of ganforge's expected failures.

Every error that a user can cause (a bad option, a damaged or hostile file, data that does not fit the
model, too little memory) derives from GanforgeError, and its message is one sentence that names the
problem and says what to change. The command line prints it as `error: <message>` and exits 1; anything
else that escapes is a bug in ganforge and keeps its traceback.
"""

from __future__ import annotations


class GanforgeError(Exception):
    """An expected failure; str(error) is the sentence shown to the user."""
