"""The reference DLRM's trace routines, transcribed for tests (an independent implementation).

From facebookresearch/dlrm, dlrm_data_pytorch.py (MIT license): `trace_profile`,
`generate_stack_distance`, `trace_generate_lru`, `read_dist_from_file`, `write_dist_to_file` and
the text forms of `read_trace_from_file` / `write_trace_to_file`, kept line for line except that
the uniform draws come from an iterator (the reference calls numpy.random.rand(1)) and ids are
Python ints (the reference's np.uint64 prints as "np.uint64(1)" under NumPy 2).
"""

import bisect
from collections import deque


def trace_profile(trace):
    rstack = deque()
    stack_distances = deque()
    line_accesses = deque()
    for r in trace:
        length = len(rstack)
        try:
            i = rstack.index(r)
            sd = length - i
            stack_distances.appendleft(sd)
            del rstack[i]
            rstack.append(r)
        except ValueError:
            sd = 0
            stack_distances.appendleft(sd)
            line_accesses.appendleft(r)
            rstack.append(r)
    return rstack, stack_distances, line_accesses


def profile_lists(trace):
    """The reference's __main__: (line_accesses, list_sd, cumm_sd) of a trace."""
    _, stack_distances, line_accesses = trace_profile(trace)
    stack_distances.reverse()
    line_accesses.reverse()
    total = len(stack_distances)
    counts = sorted({sd: list(stack_distances).count(sd) for sd in set(stack_distances)}.items())
    list_sd = [sd for sd, _ in counts]
    cumm_sd = []
    for i, (_, k) in enumerate(counts):
        cumm_sd.append(k / float(total) if i == 0 else cumm_sd[i - 1] + k / float(total))
    return list(line_accesses), list_sd, cumm_sd


def generate_stack_distance(cumm_val, cumm_dist, max_i, i, uniforms):
    u = next(uniforms)
    if i < max_i:
        j = bisect.bisect(cumm_val, i) - 1
        fi = cumm_dist[j]
        u *= fi
    for j, f in enumerate(cumm_dist):
        if u <= f:
            return cumm_val[j]


def trace_generate_lru(line_accesses, list_sd, cumm_sd, out_trace_len, uniforms):
    max_sd = list_sd[-1]
    length = len(line_accesses)
    i = 0
    ztrace = deque()
    for _ in range(out_trace_len):
        sd = generate_stack_distance(list_sd, cumm_sd, max_sd, i, uniforms)
        if sd == 0:
            line_ref = line_accesses[0]
            del line_accesses[0]
            line_accesses.append(line_ref)
            i += 1
        else:
            line_ref = line_accesses[length - sd]
            del line_accesses[length - sd]
            line_accesses.append(line_ref)
        ztrace.append(line_ref)
    return list(ztrace)


def read_dist_from_file(file_path):
    with open(file_path) as f:
        lines = f.read().splitlines()
    unique_accesses = [int(el) for el in lines[0].split(", ")]
    list_sd = [int(el) for el in lines[1].split(", ")]
    cumm_sd = [float(el) for el in lines[2].split(", ")]
    return unique_accesses, list_sd, cumm_sd


def write_dist_to_file(file_path, unique_accesses, list_sd, cumm_sd):
    with open(file_path, "w") as f:
        s = str(list(unique_accesses))
        f.write(s[1 : len(s) - 1] + "\n")
        s = str(list_sd)
        f.write(s[1 : len(s) - 1] + "\n")
        s = str(list(cumm_sd))
        f.write(s[1 : len(s) - 1] + "\n")


def read_trace_from_file(file_path):
    with open(file_path) as f:
        line = f.readline()
        return [int(x) for x in line.split(", ")]


def write_trace_to_file(file_path, trace):
    with open(file_path, "w+") as f:
        s = str(list(trace))
        f.write(s[1 : len(s) - 1])


# The reference's own example files, input/trace.log and input/dist_emb_0.log.
EXAMPLE_TRACE = "1, 2, 3, 4, 5, 3, 4, 1, 1, 6, 3"
EXAMPLE_PROFILE = "1, 2, 3, 4, 5, 6\n0, 1, 3, 4, 5\n0.55, 0.64, 0.82, 0.91, 1.0\n"
