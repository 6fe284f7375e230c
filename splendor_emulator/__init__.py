"""A local, faithful emulator of the Splendor admin API (FastAPI + uvicorn) for demos, tests, benchmarks."""

from splendor_emulator.config import (
    EmulatorConfig,
    ProviderConfig,
    StreamConfig,
    TenantConfig,
    UserTokenConfig,
)
from splendor_emulator.faults import FaultSpec, parse_fault_spec
from splendor_emulator.server import Emulator, running_emulator, running_emulator_async

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "FaultSpec",
    "ProviderConfig",
    "StreamConfig",
    "TenantConfig",
    "UserTokenConfig",
    "parse_fault_spec",
    "running_emulator",
    "running_emulator_async",
]
