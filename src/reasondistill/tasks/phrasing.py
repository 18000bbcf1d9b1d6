"""The arithmetic task's wording of each step, shared by the short rationales (synthetic.py) and the
long reasoning-model traces (long_traces.py), so both tell the same story in the same words."""

PLUS = ["buys {n} more", "finds {n} more", "gets {n} more"]
MINUS = ["gives away {n}", "loses {n}", "sells {n}"]
