"""The realistic setting, class names unknown: a vocabulary classifier (vocab_classifier), k-means
and the cluster count (kmeans, cluster_count), vote and realignment (vote_realign), S3A's CVPR
(cvpr), phrases for clusters (phrases, phrase_file, phrases_llm), teacher-student self-learning
(self_learning), metrics against class names (metrics), outputs (report) and the realistic job (job).
May import: core, data, models, features, vocab, graph, tuning, output.
"""
