"""Anomaly scoring of a pool: patch maps of a frozen model (patches), mutual scoring (msm), image and
pixel metrics (metrics), scores.csv/plots/report.md (report), report.html (html), and the anomaly
job (job).
May import: core, data, models, features, output.
"""
