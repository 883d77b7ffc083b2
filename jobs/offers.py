"""A batch over several providers (``provider: [fal, oxen, aimlapi]``): every item is planned against
every listed provider. An item no listed provider can make is refused; one that only some can make
is offered only to those. Its content key names no provider (``ANY_PROVIDER``), so which provider
makes it, the route and the list's order never make it new work."""

from __future__ import annotations

from collections.abc import Iterator

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.content import content_key, file_sha256, is_local, keyed_json, media_refs, params_json
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.expand import collect, expand, expansions
from reelbatch.jobs.item import Item, Offer
from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.rows import Where
from reelbatch.jobs.settings import Settings

ANY_PROVIDER = "*"
Made = list[Item] | ManifestError


def expand_items(manifest: Manifest, settings: Settings) -> list[Item]:
    """Every item the manifest describes, each with the providers that can make it."""
    if not manifest.fanout:
        return expand(manifest, settings)
    return collect(_merged(manifest, settings))


def serving(manifest: Manifest) -> list[str]:
    """The listed providers that serve the manifest's model, in the list's order."""
    found = []
    for provider in manifest.providers:
        try:
            catalog().model_for(provider, manifest.model)
        except ManifestError:
            continue
        found.append(provider)
    return found


def ordered(route: str, offers: list[Offer]) -> list[Offer]:
    """The order providers are offered an item: the cheapest first (the list's order between equal
    prices) for ``cheapest``, else the list's order."""
    return sorted(offers, key=lambda o: o.estimated_cost_usd) if route == "cheapest" else offers


def _merged(manifest: Manifest, settings: Settings) -> Iterator[tuple[Where, Made]]:
    tries: dict[int, list[tuple[str, Where, Made]]] = {}
    for provider in serving(manifest):
        made = expansions(manifest, settings, provider, ANY_PROVIDER)
        for position, (_, where, items) in enumerate(made):
            tries.setdefault(position, []).append((provider, where, items))
    for found in tries.values():
        yield found[0][1], _offered(manifest.route, found)


def _offered(route: str, found: list[tuple[str, Where, Made]]) -> Made:
    made = [items for _, _, items in found if not isinstance(items, ManifestError)]
    if not made:
        why = "; ".join(f"{p}: {e.message}" for p, _, e in found if isinstance(e, ManifestError))
        first = found[0][2]
        assert isinstance(first, ManifestError)
        return ManifestError(f"no listed provider can make it ({why})", first.file, first.line,
                             first.field)
    return [_with_offers(route, same) for same in zip(*made, strict=True)]


def _with_offers(route: str, same: tuple[Item, ...]) -> Item:
    offers = ordered(route, [Offer(provider=i.provider, provider_model=i.provider_model,
                                   estimated_cost_usd=i.estimated_cost_usd) for i in same])
    first = next(i for i in same if i.provider == offers[0].provider)
    return first.model_copy(update={"offers": tuple(offers)})


def same_work(old: Item, new: Item) -> bool:
    """``old`` (as stored) is the request ``new`` asks for, keyed under another provider list: the
    same model, sample and parameters (local files by their bytes); only the provider its key
    names differs. A video made for it is never made again because the list or route changed."""
    if (old.model, old.sample) != (new.model, new.sample) or params_json(old.params) != params_json(new.params):
        return False
    try:
        digests = {ref: file_sha256(ref) for ref in media_refs(new.params) if is_local(ref)}
    except OSError:
        return False
    keyed = keyed_json(new.params, digests)
    names = {ANY_PROVIDER, old.provider, new.provider, *(o.provider for o in (*old.offers, *new.offers))}
    return old.content_key in {content_key(p, new.model, keyed, new.sample) for p in names}


def kept_spec(old: Item, new: Item, pending: bool) -> Item:
    """What a kept item's spec becomes: the plan's when nothing was made for it yet (pending), else
    the provider that made it stays, with the new key and offers."""
    if pending:
        return new
    return old.model_copy(update={"content_key": new.content_key, "offers": new.offers})
