"""The API's routes by what they are for: `predict` (decisions), `audit` (re-deriving one), `operations` (the
model in service, health, readiness, metrics)."""
