"""The ingest worker hooks gmqtt internals; it must refuse to start where they are missing."""

from __future__ import annotations

import gmqtt
import pytest

from telemetry.errors import UnsupportedLibraryError
from telemetry.ingest.mqtt import SUPPORTED_GMQTT, check_gmqtt_internals


def test_installed_gmqtt_has_every_hooked_internal() -> None:
    assert gmqtt.__version__.startswith(f"{SUPPORTED_GMQTT}.")
    check_gmqtt_internals(gmqtt.__version__)


def test_another_gmqtt_release_is_refused_with_the_supported_one_named() -> None:
    with pytest.raises(UnsupportedLibraryError, match=r"gmqtt 0\.9\.1 .* supports gmqtt 0\.8\.x"):
        check_gmqtt_internals("0.9.1")


def test_a_renamed_internal_is_refused_instead_of_silently_not_hooked() -> None:
    class RenamedHandler:
        def _handle_publish(self, cmd: int, packet: bytes) -> None: ...

    with pytest.raises(
        UnsupportedLibraryError, match="RenamedHandler has no '_handle_publish_packet'"
    ):
        check_gmqtt_internals("0.8.0", ((RenamedHandler, "_handle_publish_packet"),))


def test_an_attribute_assigned_in_init_counts_as_defined() -> None:
    class Holder:
        def __init__(self) -> None:
            self._protocol = object()

    check_gmqtt_internals("0.8.0", ((Holder, "_protocol"),))
