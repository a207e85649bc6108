"""What a job writes and others read back: the staging folder swapped in whole (staging), the
deployable classifier (artifact), metrics/predictions/plots (report), report.html (html for the
classification job, html_jobs for the realistic one, html_page and thumbnails shared), soup (one classifier
averaged from runs that differ only in seed), decision rules after the method (decision, loki).
May import: core, data, models, features, vocab.
"""
