"""The rules baseline: a transparent rule on three features, answered when no model score can be.

It is not fitted to anything and claims no skill: it leans with the last day's volatility-scaled move and with
recent news tone, weakly, so that a caller who must trade gets a conservative, explainable tilt instead of nothing.
Every term is in the response's audit packet, so anyone can recompute it by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from alphapulse_contract.scoring import signal_from_probability


@dataclass(frozen=True)
class RulesBaseline:
    name: str = "momentum_news_v1"
    momentum_weight: float = 0.15
    momentum_clip: float = 3.0
    sentiment_weight: float = 0.25
    signal_band: float = 0.02

    def describe(self) -> dict:
        return asdict(self) | {
            "rule": (
                "momentum_z = ret_24h / (rv_24h * sqrt(24)), clipped to ±momentum_clip; "
                "logit = momentum_weight * momentum_z + sentiment_weight * news_sent_decayed (0 without news); "
                "probability = 1 / (1 + exp(-logit)); signal = +1 above 0.5 + signal_band, -1 below 0.5 - signal_band"
            ),
            "features": ["ret_24h", "rv_24h", "news_sent_decayed"],
        }

    def score(self, values: dict[str, float | None]) -> tuple[float | None, dict, str]:
        """(P(up), the terms that made it, "") or (None, {}, why it cannot answer)."""
        ret, vol = values.get("ret_24h"), values.get("rv_24h")
        for name, value in (("ret_24h", ret), ("rv_24h", vol)):
            if value is None or not math.isfinite(value):
                return None, {}, f"{name} is missing"
        if vol <= 0:
            return None, {}, f"rv_24h is {vol}, not positive"
        sentiment = values.get("news_sent_decayed")
        if sentiment is None or not math.isfinite(sentiment):
            sentiment = 0.0
        momentum = max(-self.momentum_clip, min(self.momentum_clip, ret / (vol * math.sqrt(24.0))))
        logit = self.momentum_weight * momentum + self.sentiment_weight * sentiment
        probability = 1.0 / (1.0 + math.exp(-logit))
        terms = {"momentum_z": momentum, "news_sent_decayed": sentiment, "logit": logit}
        return probability, terms, ""

    def signal(self, probability: float) -> int:
        return signal_from_probability(probability, self.signal_band)
