"""Finding a question's evidence in long documents: sentence passages, BM25, static token
vectors for cheap recall, the shipped sentence-embedding model for re-ranking, and their fusion."""
