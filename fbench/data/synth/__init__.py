"""The synthetic KDEF-like set: procedural 3-D faces (face), their rasteriser (raster), the set's builder (build)."""
