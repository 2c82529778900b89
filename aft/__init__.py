"""The Attention Free Transformer family (AFT-full, -local, -simple, -conv); see issue 4."""
