"""Serving under load: an open-loop arrival process, a worker pool, and the throughput search.

arrivals.py     Poisson arrival schedules (exponential inter-arrival times, absolute times)
query_sizes.py  query-size distributions: fixed, normal, lognormal, a file of quantiles
sub_batches.py  splitting a query into sub-batches and padding them to compiled sizes
server.py       the worker pool fed from a queue, timed from each scheduled arrival
workload.py     what a worker runs: a compiled model on pre-generated inputs
search.py       the highest offered rate whose tail latency meets a target
loadgen.py      the runs behind `benchmarks.loadgen`: tables, JSON and TensorBoard
"""
