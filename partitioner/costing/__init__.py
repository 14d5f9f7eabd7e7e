"""Per-(node, device) cost types and the cost table."""
