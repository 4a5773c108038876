"""The embedded demo: a synthetic video world to train and evaluate tiny models on."""
