"""Powertools' REST resolver, imported without the rest of Powertools' event handlers.

`aws_lambda_powertools.event_handler`'s `__init__` imports every resolver Powertools has
(AppSync and with it all of asyncio, AppSync events, Bedrock agents, VPC Lattice, the HTTP
resolver, ...), its `openapi` package's `__init__` imports the OpenAPI merge tool, and
`aws_lambda_powertools.utilities.data_classes`' the event classes of every AWS event source. An
API function uses one resolver and the API Gateway event; from source (the layer ships no
bytecode) the rest was about a fifth of what a function imported beyond boto3 (issue 28). These
packages are registered here with their `__init__` not run yet (:func:`defer_package_init`);
whatever asks such a package for a name it does not hold then runs its `__init__` in full, so
`from aws_lambda_powertools.event_handler import AppSyncResolver` still works anywhere in the
process.

The API's modules import Powertools' resolver and `Response` from here or from
`aws_lambda_powertools.event_handler.api_gateway`, never from the package itself.
(`tests/unit/test_cold_start_imports.py` checks what a function's import leaves out.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Mapping
from typing import Any

#: The names `aws_lambda_powertools.event_handler.api_gateway` imports from the data classes'
#: package, and the module of each: the package hands them out without running its `__init__`.
_API_GATEWAY_EVENTS = {
    "ALBEvent": "alb_event",
    "APIGatewayProxyEvent": "api_gateway_proxy_event",
    "APIGatewayProxyEventV2": "api_gateway_proxy_event",
    "BedrockAgentEvent": "bedrock_agent_event",
    "LambdaFunctionUrlEvent": "lambda_function_url_event",
    "VPCLatticeEvent": "vpc_lattice",
    "VPCLatticeEventV2": "vpc_lattice",
}


def defer_package_init(name: str, provides: Mapping[str, str] | None = None) -> None:
    """Register package `name` in `sys.modules` without running its `__init__`.

    Its submodules import as usual. A name that `provides` maps to a submodule is taken from
    that submodule; any other name the package does not hold runs the package's `__init__`
    first (once; thread-safe), after which the package is what a plain import makes it.
    Nothing happens when the package is imported already."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a package on a path: the plain import will say what is wrong
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.RLock()
    sources = dict(provides or {})

    def __getattr__(attr: str) -> Any:  # a module's PEP 562 hook
        with lock:
            namespace = vars(package)
            if attr in namespace:  # another thread completed it meanwhile
                return namespace[attr]
            if attr in sources:
                value = getattr(importlib.import_module(f"{name}.{sources[attr]}"), attr)
                setattr(package, attr, value)
                return value
            if not attr.startswith("__") and _is_submodule(name, attr):
                return importlib.import_module(f"{name}.{attr}")
            namespace.pop("__getattr__", None)
            loader.exec_module(package)
        try:
            return vars(package)[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system does: the parent package holds its submodule
        setattr(sys.modules[parent], child, package)


def _is_submodule(package: str, attr: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{attr}") is not None
    except (ImportError, ValueError):
        return False


defer_package_init("aws_lambda_powertools.event_handler")
# Its `__init__` imports the OpenAPI merge tool (and `ast`); the resolver uses other modules.
defer_package_init("aws_lambda_powertools.event_handler.openapi")
defer_package_init("aws_lambda_powertools.utilities.data_classes", _API_GATEWAY_EVENTS)

from aws_lambda_powertools.event_handler.api_gateway import (  # noqa: E402
    APIGatewayRestResolver,
    Response,
)

__all__ = ["APIGatewayRestResolver", "Response", "defer_package_init"]
