"""The plan artifact: types, build, assignment plans, JSON codec, checks, partition
extraction, write and load."""
