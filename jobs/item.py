"""An expanded item: one generation to make, with neutral parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Element(BaseModel):
    """A reference element: a frontal image and optional extra views (URLs or local paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    frontal_image: str
    reference_images: tuple[str, ...] = ()


class Params(BaseModel):
    """Provider-neutral generation parameters after expansion (placeholders filled in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: str
    start_image: str | None = None
    end_image: str | None = None
    images: tuple[str, ...] = ()
    elements: tuple[Element, ...] = ()
    video: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    keep_audio: bool | None = None
    backend: str | None = None  # which upstream the AI/ML API runs it on: kling | fal | auto
    tier: str | None = None     # standard | pro (unset: pro); only fal serves standard
    raw: dict[str, Any] = Field(default_factory=dict)  # provider-specific fields, passed through


class Item(BaseModel):
    """One generation of a batch. ``item_id`` is readable and stable; ``content_key`` identifies
    the work itself (provider, model, final parameters, sample), so an edited prompt is a new item."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    item_id: str
    source_id: str
    content_key: str
    provider: str
    model: str            # neutral catalogue name, e.g. kling-o1/image-to-video
    provider_model: str   # the provider's own model id
    params: Params
    sample: int = 1
    video_seconds: int
    estimated_cost_usd: float


class ProviderRequest(BaseModel):
    """What a provider client sends: its model id and a body in the provider's field names."""

    model_config = ConfigDict(frozen=True)
    model: str
    body: dict[str, Any]
    client_request_id: str | None = None   # our id for this request, where the provider traces one
