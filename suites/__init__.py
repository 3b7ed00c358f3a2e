"""The built-in suites, shipped as package data: `fbench run multiview` finds suites/multiview.yaml."""
