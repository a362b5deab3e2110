"""Model inputs: tables, features, the keyed batch, synthetic inputs and input checks."""
