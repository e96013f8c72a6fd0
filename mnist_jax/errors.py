"""The project's own error type: bad input, reported as one clear sentence."""


class MnistJaxError(Exception):
    """An error the user can fix; the command line prints it without a traceback."""
