"""FasDL: deep-learning training on serverless functions that talk only through an object store."""

__version__ = "0.1.0"
