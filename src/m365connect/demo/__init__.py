"""`m365connect demo`: the simulator, the service and a bulk connection, with no set-up."""

from m365connect.demo.run import run_demo

__all__ = ["run_demo"]
