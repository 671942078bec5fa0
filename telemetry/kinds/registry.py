"""The vehicle kinds this version serves: what the worker ingests and the API routes.

A new kind is a package beside the others (record, checks, detection, repository, pipeline,
service, router, schemas), a migration for its tables, a member of
:class:`~telemetry.kinds.contract.Kind`, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from telemetry.kinds.contract import Kind, KindPipeline
from telemetry.kinds.emergency import router as emergency_router
from telemetry.kinds.emergency.pipeline import EmergencyPipeline
from telemetry.kinds.remote_sensing import router as remote_sensing_router
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.walkthrough import router as walkthrough_router
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.settings import Settings

__all__ = ["KINDS", "KindSpec", "pipelines"]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One kind: its ingest pipeline (built from the settings) and its HTTP routes."""

    kind: Kind
    pipeline: Callable[[Settings], KindPipeline[Any, Any]]
    router: APIRouter


KINDS: tuple[KindSpec, ...] = (
    KindSpec(Kind.WALKTHROUGH, WalkthroughPipeline, walkthrough_router.router),
    KindSpec(Kind.REMOTE_SENSING, RemoteSensingPipeline, remote_sensing_router.router),
    KindSpec(Kind.EMERGENCY, EmergencyPipeline, emergency_router.router),
)


def pipelines(settings: Settings) -> list[KindPipeline[Any, Any]]:
    """A fresh pipeline of every kind, for one ingest worker."""
    return [spec.pipeline(settings) for spec in KINDS]
