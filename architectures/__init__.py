"""Built-in fbench architectures: one module per plugin."""
