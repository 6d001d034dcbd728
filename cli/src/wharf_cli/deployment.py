"""What a service reads from its environment, so deployment files can be checked against code."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from wharf_cli.services import ServiceSpec
from wharf_common.settings import ServiceSettings

# Variables read by libraries rather than by a settings model (aioboto3 reads the AWS_* ones).
LIBRARY_VARIABLES = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"}
)


def settings_model(spec: ServiceSpec) -> type[ServiceSettings]:
    """The one `ServiceSettings` subclass defined in ``<module>.settings``."""
    module = importlib.import_module(f"{spec.module}.settings")
    models = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    if len(models) != 1:
        raise LookupError(f"{module.__name__} defines {len(models)} settings models, not one")
    return models[0]


def variables(model: type[ServiceSettings]) -> frozenset[str]:
    """Every environment variable `model` reads (``WHARF_`` and the field name, upper case)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    return frozenset((prefix + name).upper() for name in model.model_fields)


def has_main(spec: ServiceSpec) -> bool:
    """True when ``python -m <module>`` can run: the package has a ``__main__``."""
    found = importlib.util.find_spec(spec.module)
    if found is None:
        return False
    locations = found.submodule_search_locations or []
    return any((Path(location) / "__main__.py").is_file() for location in locations)


def must_set(model: type[ServiceSettings]) -> frozenset[str]:
    """Variables a deployment has to set: secrets, and addresses that default to this machine."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names = set()
    for name, field in model.model_fields.items():
        default = field.default
        secret = isinstance(default, SecretStr)
        local = isinstance(default, str) and ("127.0.0.1" in default or "localhost" in default)
        if secret or local or name == "storage_url":
            names.add((prefix + name).upper())
    return frozenset(names)


def environment_problems(spec: ServiceSpec, env: Mapping[str, str]) -> list[str]:
    """What is wrong with the environment a deployment gives `spec`'s containers.

    Every WHARF_* variable must be one the service's settings model reads, every other
    variable one its libraries read, the variables of `must_set` must be there, and the
    HTTP port must be the service's.
    """
    model = settings_model(spec)
    known = variables(model)
    problems = [
        f"{spec.name}: {name} is not read by {model.__name__}"
        for name in sorted(env)
        if name not in known and name not in LIBRARY_VARIABLES
    ]
    problems += [
        f"{spec.name}: {name} is not set" for name in sorted(must_set(model)) if name not in env
    ]
    port = env.get("WHARF_HTTP_PORT")
    if port != str(spec.port):
        problems.append(f"{spec.name}: WHARF_HTTP_PORT is {port}, not {spec.port}")
    return problems
