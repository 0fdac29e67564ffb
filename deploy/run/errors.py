"""The one error the runner raises for what a user handed it (a model file, an image, a video, an output folder).

Its message names the file and what to do; the CLI prints it alone and exits with status 2. Errors in the metadata
itself are `deploy.metadata.MetadataError`, which the CLI treats the same way.
"""

from __future__ import annotations


class InputError(ValueError):
    """A model file, image, video or output folder the runner cannot use; the message says which and what to do."""
