"""Graph methods' math: sparse kNN graphs (knn, sparse), propagation and bound optimisation
(bound, slk), hypergraph propagation (hyper) and its label-free
stopping rules (stopping), CCA (cca), TransCLIP / StatA's Gaussian model with a
kNN Laplacian (gaussian), Sinkhorn label balancing (sinkhorn), and the graph methods' shared outputs
(outputs: rectified prototypes, predictions, the small-pool guard).
May import: core.
"""
