"""Instruments and applications built on the library: the speed benchmark (:mod:`.bench`) and its
driver of the official code (:mod:`.bench_official`), parameter sweeps (:mod:`.sweep`), the
committed results records (:mod:`.results`) and the demo (:mod:`.demo`)."""
