"""Library behind the overlearned person re-identification workflow.

Rules call the small programs in scripts/, which parse arguments and call this package.
"""

__version__ = "0.1.0"
