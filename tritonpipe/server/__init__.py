"""Launching and supervising a real tritonserver."""

from tritonpipe.server.install import TritonInstall, find_triton
from tritonpipe.server.launcher import TritonServer, serve
from tritonpipe.server.options import TOKEN_HEADER, ServerOptions

__all__ = ["TOKEN_HEADER", "ServerOptions", "TritonInstall", "TritonServer", "find_triton", "serve"]
