"""Model inputs: posts → NumPy arrays (``batching``), from word vectors (``embeddings``) or word pieces
(``pieces``). No torch here."""
