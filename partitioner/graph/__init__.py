"""Graph analysis: load, normalise, shapes, fold, FLOPs -> AnalysedModel."""
