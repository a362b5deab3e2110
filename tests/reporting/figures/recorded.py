"""The recorded results.json files of tiny smoke runs (see record.py); artists found by gid."""

import copy
import json
import os
import shutil

from recjax.reporting.figures.results import RunResults

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def raw(name: str) -> dict:
    """data/<name>.json, read with json alone (the tests' independent view of the numbers)."""
    with open(os.path.join(DATA, f"{name}.json")) as file:
        return json.load(file)


def recorded(name: str, change=None) -> RunResults:
    """data/<name>.json as a run; `change(data)`, if given, edits a copy first."""
    data = copy.deepcopy(raw(name))
    if change is not None:
        change(data)
    return RunResults(path=os.path.join(DATA, f"{name}.json"), data=data)


def as_run_folder(name: str, parent) -> str:
    """Copies data/<name>.json to <parent>/<name>/results.json (a run folder); returns it."""
    folder = os.path.join(parent, name)
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(DATA, f"{name}.json"), os.path.join(folder, "results.json"))
    return folder


def by_gid(axes, gid: str) -> list:
    """Every artist of `axes` whose gid is `gid`."""
    return [artist for artist in axes.findobj() if artist.get_gid() == gid]


def one(axes, gid: str):
    (artist,) = by_gid(axes, gid)
    return artist
