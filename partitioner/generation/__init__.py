"""Generative inference: decoder layouts with a KV cache, per-phase (prefill / decode) placement,
and the generate loop over a plan's runners."""
