"""The YAML price file: one block per model and time span, read node by node so that every
problem is reported with its line (the format: price_files and docs/billing.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from metering.billing.events import SERVICE_TIERS
from metering.billing.prices import PriceEntry
from metering.billing.tokens import TOKEN_CLASSES
from metering.files.price_fields import ISO_4217, EntryFields, PriceFileError, validated_entries

_NULL_TAG: Final = "tag:yaml.org,2002:null"


_BLOCK_KEYS: Final = ("model", "currency", "effective_from", "effective_to", "long_context")


_TOP_KEYS: Final = ("currency", "prices")


def parse_price_yaml(text: str, source: str) -> list[PriceEntry]:
    """Entries of a YAML price file's ``text``; ``source`` names it in messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PriceFileError(
            [
                f"{source}:{line}: not valid YAML: {exc.problem or exc}; check indentation and"
                " quoting"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise PriceFileError([f"{source}: not valid YAML: {exc}"]) from None
    reader = _YamlReader(source)
    entries = reader.read(root)
    return validated_entries(entries, reader.problems)


class _YamlReader:
    """Walks the composed YAML node tree, so that every value keeps its line number and no
    number is ever read as a float."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def at(self, node: Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def fail(self, node: Node, message: str) -> None:
        self.problems.append(f"{self.at(node)}: {message}")

    def read(self, root: Node | None) -> list[PriceEntry]:
        if root is None:
            self.problems.append(f"{self.source}:1: the file is empty: see docs/billing.md")
            return []
        top = self.mapping(root, "the file", _TOP_KEYS)
        if top is None:
            return []
        currency = None
        if "currency" in top:
            currency = self.scalar(top["currency"][1])
            if currency is None or not self.currency_ok(top["currency"][1], currency):
                return []
        if "prices" not in top:
            self.fail(root, "no 'prices:' list: add one with a block per model")
            return []
        prices = top["prices"][1]
        if not isinstance(prices, SequenceNode):
            self.fail(prices, "'prices' must be a list of model blocks, each starting '- model:'")
            return []
        entries: list[PriceEntry] = []
        for block in prices.value:
            entries.extend(self.block(block, currency))
        return entries

    def block(self, node: Node, default_currency: str | None) -> Iterator[PriceEntry]:
        keys = self.mapping(node, "a model block", (*_BLOCK_KEYS, *SERVICE_TIERS))
        if keys is None:
            return
        model_node = keys.get("model", (None, None))[1]
        if model_node is None:
            self.fail(node, "the block has no 'model:'; name the model it prices")
            return
        model = self.scalar(model_node) or ""
        if not model:
            self.fail(model_node, "the model name is empty")
            return
        currency_node = keys["currency"][1] if "currency" in keys else None
        currency = self.scalar(currency_node) if currency_node is not None else default_currency
        if currency is None:
            self.fail(node, f"no currency for {model}: add 'currency: USD' to the block or file")
            return
        if currency_node is not None and not self.currency_ok(currency_node, currency):
            return
        if "effective_from" not in keys:
            self.fail(node, f"{model} has no effective_from: add e.g. 'effective_from: 2026-01-01'")
            return
        start = self.moment(keys["effective_from"][1], "effective_from")
        end = None
        if "effective_to" in keys and not self.is_null(keys["effective_to"][1]):
            end = self.moment(keys["effective_to"][1], "effective_to")
            if end is None:
                return
        if start is None:
            return
        span = (model, currency, start, end)
        if not any(tier in keys for tier in SERVICE_TIERS):
            self.fail(node, f"{model} prices no service tier: add {', '.join(SERVICE_TIERS)}")
        for tier in SERVICE_TIERS:
            if tier in keys:
                yield from self.tier(keys[tier][1], span, tier, None)
        if "long_context" in keys:
            yield from self.long_context(keys["long_context"][1], span)

    def long_context(
        self, node: Node, span: tuple[str, str, datetime, datetime | None]
    ) -> Iterator[PriceEntry]:
        keys = self.mapping(node, "'long_context'", ("above", *SERVICE_TIERS))
        if keys is None:
            return
        if "above" not in keys:
            self.fail(node, "long_context needs 'above: N', the input tokens a request exceeds")
            return
        above_node = keys["above"][1]
        above = EntryFields(self.at(above_node), self.problems).count(
            "long_context.above", self.scalar(above_node) or ""
        )
        if above is None:
            return
        for tier in SERVICE_TIERS:
            if tier in keys:
                yield from self.tier(keys[tier][1], span, tier, above)

    def tier(
        self,
        node: Node,
        span: tuple[str, str, datetime, datetime | None],
        service_tier: str,
        long_context_above: int | None,
    ) -> Iterator[PriceEntry]:
        keys = self.mapping(node, f"'{service_tier}'", TOKEN_CLASSES)
        if keys is None:
            return
        for token_class, (_, value) in keys.items():
            if isinstance(value, SequenceNode):
                if long_context_above is not None:
                    self.fail(value, "long-context prices cannot have bands: give one price")
                    continue
                for band in value.value:
                    band_keys = self.mapping(band, "a band", ("up_to", "price"))
                    if band_keys is None:
                        continue
                    if "price" not in band_keys:
                        self.fail(band, "the band has no 'price:'")
                        continue
                    up_to = None
                    if "up_to" in band_keys:
                        up_node = band_keys["up_to"][1]
                        up_to = EntryFields(self.at(up_node), self.problems).count(
                            "up_to", self.scalar(up_node) or ""
                        )
                        if up_to is None:
                            continue
                    entry = self.entry(
                        band_keys["price"][1], span, token_class, service_tier, up_to, None
                    )
                    if entry is not None:
                        yield entry
            else:
                entry = self.entry(value, span, token_class, service_tier, None, long_context_above)
                if entry is not None:
                    yield entry

    def entry(
        self,
        node: Node,
        span: tuple[str, str, datetime, datetime | None],
        token_class: str,
        service_tier: str,
        tier_up_to: int | None,
        long_context_above: int | None,
    ) -> PriceEntry | None:
        model, currency, start, end = span
        fields = EntryFields(self.at(node), self.problems)
        text = self.scalar(node)
        if text is None:
            return None
        return fields.entry(
            model=model,
            token_class=token_class,
            service_tier=service_tier,
            currency=currency,
            price=fields.price(f"the {token_class} price of {model} {service_tier}", text),
            effective_from=start,
            effective_to=end,
            tier_up_to=tier_up_to,
            long_context_above=long_context_above,
        )

    def mapping(
        self, node: Node, what: str, allowed: Iterable[str]
    ) -> dict[str, tuple[Node, Node]] | None:
        """``{key: (key node, value node)}``; unknown and repeated keys are problems."""
        allowed = tuple(allowed)
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping of {', '.join(allowed)}")
            return None
        result: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if key is None:
                continue
            if key in result:
                first = result[key][0].start_mark.line + 1
                self.fail(key_node, f"{key!r} appears twice in {what} (first on line {first})")
            elif key not in allowed:
                self.fail(key_node, f"unknown key {key!r} in {what}: expected {', '.join(allowed)}")
            else:
                result[key] = (key_node, value_node)
        return result

    def currency_ok(self, node: Node, currency: str) -> bool:
        if currency in ISO_4217:
            return True
        self.fail(node, f"currency {currency!r} must be an ISO 4217 code such as USD")
        return False

    def moment(self, node: Node, name: str) -> datetime | None:
        return EntryFields(self.at(node), self.problems).moment(name, self.scalar(node) or "")

    def scalar(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            self.fail(node, "expected a single value here, not a list or mapping")
            return None
        return "" if node.tag == _NULL_TAG else str(node.value).strip()

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _NULL_TAG
