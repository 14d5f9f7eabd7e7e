"""Plans that span machines: running a plan's partitions on Ray actors, one per device."""
