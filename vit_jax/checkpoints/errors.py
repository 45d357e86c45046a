"""The one exception type that checkpoint code raises for a user's input."""


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not fit the model; the message
  is one line naming the file, the key or the shape, and what to do."""
