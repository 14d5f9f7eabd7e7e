"""CP-SAT models of the placement problem: schedule, serial, throughput, and the relaxations
that prove bounds."""
