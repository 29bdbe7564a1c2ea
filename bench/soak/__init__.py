"""The soak of the deployed process layout with faults; run it with `python -m bench.soak` (see __main__)."""
