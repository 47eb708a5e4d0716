"""What-if treatment scenarios simulated on twins."""
