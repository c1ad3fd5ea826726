"""Lineage across datasets, both ways: what data, code and params made a model version
(queries.model_lineage), which runs and versions a data version fed (data_lineage), which
models saw a file (file_lineage), and a picture of it all (graph.write_graph).

Modules: revisions (data.dvc's git history), listings (DVC .dir listings by md5), queries
(MLflow registry and runs), graph (HTML/SVG and PNG). Nothing heavy is imported here.
"""
