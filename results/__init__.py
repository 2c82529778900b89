"""Results gathered from run directories: the AFT paper's numbers (paper.py), the tables that
set ours beside them (tables.py) and the mini reproduction (sweep.py)."""
