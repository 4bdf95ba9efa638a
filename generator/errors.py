"""The one exception type users see: its message is a single line naming the input and the fix."""


class AtlasError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
