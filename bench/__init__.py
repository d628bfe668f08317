"""story_fsm's benchmarks: what a durable transition costs, beside the physical limit and peers.

Not tests and never run by CI (``make bench-quick`` at most, for breakage). Entry point:
``python bench/run.py`` (full) or ``python bench/run.py --quick``; see ``bench/RESULTS.md``.
Every timed run happens in a fresh subprocess (``python -m bench.<module> ...``), variants are
interleaved, and each comparison is a ratio taken within one repeat.
"""
