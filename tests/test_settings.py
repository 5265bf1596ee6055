"""Every setting is documented in .env.example with its default, as the README promises."""

from __future__ import annotations

from pathlib import Path

from vectorgate.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def documented() -> dict[str, str]:
    """NAME -> value of each `VECTORGATE_NAME=value` line (commented out or not)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, sep, value = line.lstrip("# ").partition("=")
        if sep and name.startswith("VECTORGATE_") and " " not in name:
            found[name.removeprefix("VECTORGATE_").lower()] = value
    return found


def test_every_setting_is_in_the_env_example() -> None:
    assert sorted(set(Settings.model_fields) - set(documented())) == []


def test_the_env_example_names_no_setting_that_does_not_exist() -> None:
    assert sorted(set(documented()) - set(Settings.model_fields)) == []


def test_the_env_example_shows_each_default_that_has_one_value() -> None:
    shown = documented()
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, int | float) and not isinstance(default, bool) and shown[name]:
            assert float(shown[name]) == float(default), name
