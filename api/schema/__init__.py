"""Schema domain: introspection, field mappings, schema comparison and generated transformations."""
