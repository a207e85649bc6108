"""What a job writes and others read back: the staging folder swapped in whole (staging), the
deployable classifier (artifact), metrics/predictions/plots (report), report.html (html, html_jobs,
html_page, thumbnails).
May import: core, data, models, features.
"""
