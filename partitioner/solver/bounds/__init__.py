"""Lower bounds on the evaluator's objective: closed-form, segmented relaxations, memory budgets."""
