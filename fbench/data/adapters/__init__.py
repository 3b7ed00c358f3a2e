"""Built-in dataset adapters, one module per format; ``fbench.registry.DATASETS`` imports each on first use.

kdef, rafdb, fer2013, ferplus, affectnet, jaffe, ckplus, rafd, imagefolder (``<root>/<class>/...``, also as the
``imagefolder/<name>`` family) and csv (a manifest). Shared helpers live in ``_common``; free-form label names in
``fbench.data.labels``.
"""
