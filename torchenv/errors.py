"""The one exception type users see: a single line naming what is wrong and what to do."""


class TorchenvError(Exception):
    """A failure explained in one line; the command surface prints it and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code
