"""What an LLM call cost: its token usage times a per-model price table.

The engine sums each stage's ``_meta.cost_estimate`` into the workflow's cost, so the OpenAI
stages need a price per model. Providers bill by input and output tokens at a per-model rate;
the default table below is a snapshot of published list prices and will drift, so pass your
own (``prices=``) when the numbers matter. Cached-input discounts, batch and priority tiers are
not modelled: the figure is an estimate for budgeting, not an invoice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from story_fsm._log import get_logger
from story_fsm.errors import InputValidationError

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]

Price = tuple[float, float]
"""USD per one million input (prompt) tokens, and per one million output (completion) tokens."""

DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        # OpenAI standard-tier list prices (USD per 1M tokens). Override for your contract.
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-2024-05-13": (5.00, 15.00),  # the first snapshot kept its launch price
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-5": (1.25, 10.00),
        "gpt-5-mini": (0.25, 2.00),
        "gpt-5-nano": (0.05, 0.40),
        "o3": (2.00, 8.00),
        "o3-mini": (1.10, 4.40),
        "o4-mini": (1.10, 4.40),
    }
)
"""Default prices per model; a dated name (``gpt-4o-2024-08-06``) uses its base entry."""

# What may follow a listed name and still be that model: a date ("gpt-4o-2024-08-06",
# "gpt-4-0613") or a tag (":8b", "@001"). Any other suffix names another model with its own
# price ("o3-pro" is not "o3", "gpt-5.1" not "gpt-5"): it is priced unknown, with a warning,
# rather than undercounted at its base's price.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})|[:@].*")


def _checked(model: object, price: object) -> tuple[str, Price]:
    if not isinstance(model, str) or not model.strip():
        raise InputValidationError(f"prices: model names must be non-empty strings, got {model!r}")
    parts = tuple(price) if isinstance(price, tuple | list) else ()
    valid = len(parts) == 2 and all(
        isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) and p >= 0
        for p in parts
    )
    if not valid:
        raise InputValidationError(
            f"prices[{model!r}] must be (input_usd_per_1m, output_usd_per_1m) with two "
            f"non-negative numbers, got {price!r}"
        )
    return model.strip().lower(), (float(parts[0]), float(parts[1]))


class PriceTable:
    """The default prices, overridden or extended by the caller's, with prefix lookup.

    Args:
        overrides: ``{"model": (input_usd_per_1m, output_usd_per_1m)}``; entries replace the
            default ones of the same name and add new models (e.g. an Azure deployment name,
            or ``"llama3.1": (0, 0)`` for a local model).

    Raises:
        InputValidationError: A name is empty or a price is not two non-negative numbers.

    """

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        merged = dict(DEFAULT_PRICES)
        merged.update(_checked(model, price) for model, price in (overrides or {}).items())
        self._prices = merged
        self._warned: set[str] = set()

    def lookup(self, model: str) -> Price | None:
        """Return the price of *model*: its exact entry, else its base's.

        The base is the listed name that *model* is a dated snapshot (``-2024-08-06``,
        ``-0613``) or a tag (``:8b``, ``@001``) of.
        """
        name = model.strip().lower()
        if name in self._prices:
            return self._prices[name]
        bases = [
            base
            for base in self._prices
            if name.startswith(base) and _SNAPSHOT.fullmatch(name, len(base))
        ]
        return self._prices[max(bases, key=len)] if bases else None

    def cost(self, models: Iterable[str], prompt_tokens: int, completion_tokens: int) -> float:
        """Return the USD cost of a call, pricing it by the first of *models* that is listed.

        Several names are tried because the name asked for (an Azure deployment, an alias)
        and the name the server reports (``gpt-4o-2024-08-06``) may differ. When none is
        listed the cost is 0.0 and a warning is logged once per model for this table.
        """
        names = [m for m in models if m]
        for name in names:
            price = self.lookup(name)
            if price is not None:
                return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
        key = names[0] if names else ""
        if key not in self._warned:
            self._warned.add(key)
            get_logger().warning(
                "llm_price_unknown",
                model=key,
                hint="pass prices={model: (input_usd_per_1m, output_usd_per_1m)}; cost is 0.0",
            )
        return 0.0
