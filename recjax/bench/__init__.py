"""Measurement engines: latency sweeps, breakdown, co-location, embedding and machine ceilings."""
