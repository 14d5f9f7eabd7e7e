"""Devices, links and clusters: types, TOML files, local detection, presets."""
