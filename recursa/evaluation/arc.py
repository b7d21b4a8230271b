"""ARC voting, pass@K and submission.json: the ARC family's scorer, which lives with the family
(:mod:`recursa.tasks.arc_voting`); re-exported here."""

from ..tasks.arc_voting import PASS_K, ArcVoting  # noqa: F401
