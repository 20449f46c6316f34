"""Token usage of one request, by type, as Bedrock reported it.

Each type is kept separately (cache reads and writes are never folded into
input tokens) because they are priced differently and teams are billed on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Prices


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def cost_usd(self, prices: Prices) -> float:
        """What these tokens cost at ``prices`` (USD per million tokens of each type)."""
        return (self.input * prices.input + self.output * prices.output
                + self.cache_read * prices.cache_read + self.cache_write * prices.cache_write) / 1_000_000

    def as_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "cache_read": self.cache_read, "cache_write": self.cache_write}
