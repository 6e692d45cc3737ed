"""Evaluation: code images with stylecodec and the anchors, measure, report (DESIGN.md §3).

Owns:

- :mod:`.harness`: ``stylecodec eval`` -> ``RUN_DIR/results*.csv`` (one row per image x codec x setting);
  :mod:`.coding` codes one face, :mod:`.measure` computes the metrics, :mod:`.settings` the sweeps,
  :mod:`.results` reads / writes / merges the CSVs, :mod:`.choices` names what can be asked for
- :mod:`.report`:  ``summary.md`` (:mod:`.tables`), RD plots (:mod:`.plots`), ``index.html``
  (:mod:`.html`), TensorBoard logs (:mod:`.tb`)
- :mod:`.lfw`:     LFW verification on decoded base-layer faces (SFace judge), with the alignment
  cache (:mod:`.align_cache`)
- :mod:`.samples`: the demo's sample faces (shipped, or rendered by the model's generator)

May import: the codec and everything below it (``codec``, ``zoo``, ``rate``, ``batch``, ``align``,
``metrics``, ``anchors``, ``assets``, ``bitstream``, ...); never ``train`` or ``commands``.
"""
