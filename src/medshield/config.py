"""Typed configuration, loadable from YAML files under ``configs/`` and overridable from the CLI.

There is no global mutable configuration: a config object is built, validated and passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["TrainConfig", "ConfigError", "load_config"]

C = TypeVar("C", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid."""


class TrainConfig(BaseModel):
    """``medshield train``: one model on one dataset."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "mnist"
    model: str = "lenet5"
    model_options: dict[str, Any] = Field(default_factory=dict)
    source: str = Field("auto", description="auto | full | embedded")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: str = "adam"
    seed: int = 0


def load_config(path: str | Path | None, cls: type[C], overrides: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from a YAML file (optional) and CLI ``overrides`` (``None`` values ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found; see configs/ for examples") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of option: value at the top level")
        values.update(loaded or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid configuration:\n{err}") from None
