"""Money a batch has cost: charged (the provider reported it) and estimated (the catalogue's price
for generations the provider made without reporting a cost). A generation counts once it has
succeeded at the provider, downloaded or not; one that failed is taken as unbilled (neither
provider documents billing failures)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spend:
    charged_usd: float = 0.0
    estimated_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        return self.charged_usd + self.estimated_usd

    def label(self) -> str:
        """``$1.20 charged + $2.16 estimated``, naming only what is there."""
        parts = [f"${self.charged_usd:,.2f} charged"] if self.charged_usd else []
        if self.estimated_usd or not parts:
            parts.append(f"${self.estimated_usd:,.2f} estimated")
        return " + ".join(parts)

    def as_dict(self) -> dict[str, float]:
        return {"charged_usd": round(self.charged_usd, 4), "estimated_usd": round(self.estimated_usd, 4)}
