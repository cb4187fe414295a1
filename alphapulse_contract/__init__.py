"""The contract the asset graph and the API share, depending on neither.

What the graph publishes and the API serves: the promoted-model manifest and the scoring model (`scoring`), the
predictors and compiled trees that score it, the rules baseline, where the objects live and how both sides read
them (`storage`), the MLflow pyfunc the trained model is logged as, and the configuration schema both sides
declare their settings with (`config`). No FastAPI, no Dagster: the MLflow model ships this package alone.
"""
