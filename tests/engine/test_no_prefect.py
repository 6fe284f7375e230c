"""The engine runs without Prefect: importing every module of it loads no `prefect` module."""

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import splendor_flows.engine as engine
for module in pkgutil.iter_modules(engine.__path__):
    importlib.import_module(f"splendor_flows.engine.{module.name}")
loaded = sorted(name for name in sys.modules if name == "prefect" or name.startswith("prefect."))
print(len(list(pkgutil.iter_modules(engine.__path__))), loaded)
"""


def test_importing_the_engine_loads_no_prefect() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    count, loaded = out.split(" ", 1)
    assert int(count) >= 10, "the probe found the engine's modules"
    assert loaded.strip() == "[]", f"the engine imports Prefect: {loaded}"
