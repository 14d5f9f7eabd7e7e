"""Running plans: the in-process executor, Session, feeds and run records."""
