"""The cross-site report: ``python -m eegfm.evaluation.report RUN_DIR ... --output report.html``
gathers every stage's outputs into one self-contained HTML file, its Markdown twin and report.json
(``cli``). ``discover`` finds the inputs, ``scoring`` runs the models on held-out windows,
``stats`` holds the subject bootstrap, MMD and the site probe, ``sections_*`` build the sections
and ``render`` writes them."""
