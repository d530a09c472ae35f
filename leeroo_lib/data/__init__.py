"""Data layer: benchmarks (questions), recorded suites, splits, embeddings of questions."""
