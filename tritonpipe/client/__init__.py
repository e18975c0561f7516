"""Synchronous and asyncio Triton clients over HTTP or gRPC, with inputs checked before sending."""

from tritonpipe.client.aio import AsyncClient
from tritonpipe.client.base import ClientOptions
from tritonpipe.client.checks import ModelInfo
from tritonpipe.client.sync import Client

__all__ = ["AsyncClient", "Client", "ClientOptions", "ModelInfo"]
