"""The provider stand-in (Oxen.ai and the AI/ML API over real HTTP); it imports only from jobs/.
`reelbatch simulator` serves it."""

__all__ = ["cli"]
