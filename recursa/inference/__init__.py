"""Running a trained model: the checkpoint format and loading (:mod:`.checkpoint`), the one
engine that makes a model think about a batch (:mod:`.engine`: :class:`~.engine.Protocol`,
:func:`~.engine.think`), the import of official checkpoints (:mod:`.official`), and what shows the
thinking (:mod:`.display` for text and figures, :mod:`.render` for step-by-step traces)."""
