"""Helpers for tests and benchmarks that need real infrastructure (a real S3-compatible server)."""

from fasdl.errors import SeaweedError
from fasdl.testing.seaweedfs import SeaweedServer, find_weed, free_port

__all__ = ["SeaweedError", "SeaweedServer", "find_weed", "free_port"]
