"""An expanded item: one generation to make, with neutral parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


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


class Offer(BaseModel):
    """One provider of a batch over several that can make an item: its model id and price there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: str
    provider_model: str
    estimated_cost_usd: float


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
    # a batch over several providers: every provider that can make it, in the route's order (the
    # item's provider is the first until a slot binds it to one); empty for one provider
    offers: tuple[Offer, ...] = ()

    @model_serializer(mode="wrap")
    def _without_empty_offers(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("offers"):
            data.pop("offers", None)   # one provider: the item is stored exactly as before
        return data

    def bound_to(self, provider: str) -> Item:
        """The item as ``provider`` makes it (its model id and price there)."""
        offer = next(o for o in self.offers if o.provider == provider)
        return self.model_copy(update={"provider": provider, "provider_model": offer.provider_model,
                                       "estimated_cost_usd": offer.estimated_cost_usd})

    def can_go_to(self, provider: str) -> bool:
        return provider == self.provider or any(o.provider == provider for o in self.offers)


class ProviderRequest(BaseModel):
    """What a provider client sends: its model id and a body in the provider's field names."""

    model_config = ConfigDict(frozen=True)
    model: str
    body: dict[str, Any]
    client_request_id: str | None = None   # our id for this request, where the provider traces one
