from __future__ import annotations

import pytest

from medshield.registry import Registry, RegistryError, create, get_registry


def test_register_create_alias_and_names() -> None:
    reg: Registry[type] = Registry("test-widget")

    @reg.register("round_thing", aliases=("circle",))
    class Round:
        def __init__(self, radius: float = 1.0) -> None:
            self.radius = radius

    assert reg.names() == ["round-thing"]
    assert reg.create("round_thing", radius=3.0).radius == 3.0
    assert isinstance(create("test-widget", "CIRCLE"), Round)
    assert "circle" in reg and "square" not in reg
    with pytest.raises(ValueError, match="twice"):
        reg.register("round-thing")(Round)


def test_unknown_name_lists_available_and_suggests() -> None:
    reg: Registry[type] = Registry("test-gadget")
    reg.register("lenet5")(object)
    with pytest.raises(RegistryError) as err:
        reg.get("lenet")
    msg = str(err.value)
    assert "unknown test-gadget 'lenet'" in msg and "lenet5" in msg and "Did you mean" in msg


def test_unknown_kind() -> None:
    with pytest.raises(RegistryError, match="unknown kind"):
        get_registry("no-such-kind")


def test_builtin_kinds_are_importable_on_demand() -> None:
    assert "mnist" in get_registry("dataset")
    assert "lenet5" in get_registry("model")
