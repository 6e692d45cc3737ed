"""Evaluation: code images with stylecodec and the anchors, measure, report (DESIGN.md §3).

- :mod:`.harness`: ``stylecodec eval`` -> ``RUN_DIR/results*.csv`` (one row per image x codec x setting);
  :mod:`.coding` codes one face, :mod:`.measure` computes the metrics, :mod:`.settings` the sweeps,
  :mod:`.results` reads / writes / merges the CSVs
- :mod:`.report`:  ``summary.md`` (:mod:`.tables`), RD plots (:mod:`.plots`), ``index.html``
  (:mod:`.html`), TensorBoard logs (:mod:`.tb`)
- :mod:`.lfw`:     LFW verification on decoded base-layer faces (SFace judge)
- :mod:`.batch`:   ``stylecodec compress-dir`` (sharded, resumable dataset compression)
- :mod:`.samples`: the demo's sample faces (shipped, or rendered by the model's generator)
"""
