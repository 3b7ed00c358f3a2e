"""A suite file -> a validated Suite: schema, loading (YAML, --set, tuned parameters), checks, recipes,
conditions and search spaces."""
