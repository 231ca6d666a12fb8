"""Fuzz tests: damaged annotation files through every public entry point.

A seeded mutator (``random.Random(SEED)``, so the same inputs on every run)
damages two small valid files written here by hand (one v1, one v2) at three
levels:

* bytes: truncation, flipped / inserted / deleted bytes, other encodings
  (UTF-16, UTF-32, Latin-1), NUL bytes;
* JSON values: a random node replaced by an absurd value (integers of 5,000
  digits, 1e308, 1e400, NaN, -1, deep nesting, long strings, paths as
  ``Folder``), keys deleted or given twice;
* the file itself: a FIFO, a symlink loop, a dangling symlink, a folder, a
  character device, an empty file.

The oracle is independent of the package: a mutant is parsed with the
standard library (``json.loads`` with a duplicate-key check) and checked
against the schema rules written out below. Each entry point must either raise
a project exception (:class:`~vfs_utils.errors.VfsError`) whose message names
the file, or return exactly what the reference parse says. The CLI must answer
with one line on stderr and exit status 0, 1 or 2, never a traceback.
"""
from __future__ import annotations

import collections
import io
import json
import math
import os
import random
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from vfs_utils import annotation, matching, morphometry, readings
from vfs_utils.cli import main
from vfs_utils.dicom import write_series
from vfs_utils.errors import DataNotFoundError, VfsError

SEED = 20261129
N_MUTANTS = 400             # value- and byte-level mutants (the file-system ones come on top)
SPACING = (0.5, 0.5, 2.0)
UID = "1.2.826.0.1.3680043.10.543.4.1"
FOLDER = "STUDY-0001"
SHAPE = (40, 8, 30)         # rows, cols, slices of the one written series
LEVELS = ["Th7", "Th8", "Th9"]

pytestmark = pytest.mark.slow  # about 1500 damaged inputs through every entry point

#: How many inputs each entry point saw (printed by the last test, for the report).
COUNTS: collections.Counter = collections.Counter()


# --------------------------------------------------------------------------- valid inputs
def _vertebra(top: float, dx: float = 0.0) -> list[list[float]]:
    """Six points [row, col, slice] of one vertebra: anterior, middle, posterior pairs."""
    return [[2 + dx, 4, top], [2 + dx, 4, top + 6], [6 + dx, 4, top], [6 + dx, 4, top + 5.5],
            [10 + dx, 4, top], [10 + dx, 4, top + 6]]


def _v1_doc() -> dict:
    return {"Folder": FOLDER, "SeriesInstanceUID": UID,
            "Annotation": {e: [_vertebra(t + k * 0.5, k * 0.25) for t in (1, 9, 17)]
                           for k, e in enumerate(("expert0", "expert1"))}}


def _v2_doc() -> dict:
    def item(points, level):
        return {"segments": [points[0:2], points[2:4], points[4:6]], "type": level}
    return {"Folder": FOLDER, "SeriesInstanceUID": UID,
            "Annotation": {e: [item(_vertebra(t + k * 0.5), lv)
                               for t, lv in zip((1, 9, 17), LEVELS)]
                           for k, e in enumerate(("expert0", "expert1"))}}


# --------------------------------------------------------------------------- mutator
_ABSURD = [
    "1" + "0" * 5000,                      # an integer of 5,001 digits
    "0." + "1" * 5000,                     # a decimal of 5,000 digits
    "1e308", "-1e308", "1e400", "-1", "-0.0", "NaN", "Infinity", "100001", "99999.5",
    "1e-320", "true", "null", '""', '"5"', "[]", "{}", "[1, 2]", "[1, 2, 3, 4]",
    "[" * 1000 + "]" * 1000,               # nesting 1,000 deep
    '"' + "x" * 2000 + '"', '"/etc"', '".."', '"a/b"', '"C:\\\\x"', '"\\u0000"',
    '"Th99"', '"th7"', '" "', '"\\n"', '"\\ud800"',
]


def _nodes(value, path=()):
    """Every (path, value) of a JSON tree."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, (*path, i))


def _dumps_with(doc, path, raw: str) -> str:
    """``doc`` as JSON text with the node at ``path`` replaced by the raw text ``raw``."""
    marker = "\uE000MARK\uE000"
    copy = json.loads(json.dumps(doc))
    if not path:
        return raw
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw)


def _value_mutant(rng: random.Random, doc: dict) -> str:
    nodes = list(_nodes(doc))
    path, _ = rng.choice(nodes)
    kind = rng.random()
    if kind < 0.6:
        return _dumps_with(doc, path, rng.choice(_ABSURD))
    if kind < 0.75 and path and isinstance(path[-1], str):        # delete a key
        copy = json.loads(json.dumps(doc))
        node = copy
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return json.dumps(copy)
    if kind < 0.9:                                                # a key given twice
        key = rng.choice(["Folder", "SeriesInstanceUID", "Annotation", "expert0", "type"])
        text = json.dumps(doc)
        i = text.find(f'"{key}": ')
        if i >= 0:
            dup = f'"{key}": {json.dumps(rng.choice(["OTHER", 3, [], FOLDER]))}, '
            return text[:i] + dup + text[i:]
        return text
    # a node replaced by another node of the tree
    (target, _), (_, other) = rng.choice(nodes), rng.choice(nodes)
    return _dumps_with(doc, target, json.dumps(other))


def _byte_mutant(rng: random.Random, doc: dict) -> bytes:
    text = json.dumps(doc)
    raw = text.encode("utf-8")
    kind = rng.randrange(7)
    if kind == 0:
        return raw[:rng.randrange(len(raw))]
    if kind == 1:
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1:]
    if kind == 2:
        i = rng.randrange(len(raw))
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        return raw[:i] + junk + raw[i:]
    if kind == 3:
        i = rng.randrange(len(raw))
        return raw[:i] + raw[i + rng.randrange(1, 40):]
    if kind == 4:
        return text.encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                       "utf-32-le"]))
    if kind == 5:
        named = json.dumps({**doc, "Folder": "STUDY-\u00e9\u00df"}, ensure_ascii=False)
        return named.encode(rng.choice(["latin-1", "cp1252", "utf-8", "utf-8-sig"]))
    return raw.replace(b",", b",\x00", 1)


def _mutants() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    out: dict[bytes, str] = {}
    i = 0
    while len(out) < N_MUTANTS:          # distinct inputs only
        doc = _v1_doc() if i % 2 == 0 else _v2_doc()
        if rng.random() < 0.6:
            data = _value_mutant(rng, doc).encode("utf-8", "surrogatepass")
        else:
            data = _byte_mutant(rng, doc)
        out.setdefault(data, f"M{len(out):04d}.json")
        i += 1
    return [(name, data) for data, name in out.items()]


MUTANTS = _mutants()


# --------------------------------------------------------------------------- the oracle
class _Dup(Exception):
    pass


def _no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _Dup()
    return dict(pairs)


def _reference(data: bytes):
    """The annotation a mutant must give: (folder, uid, {expert: (points, levels)}), or None.

    Written from the schema (see the annotation module's docstring), with the standard
    library only; None means the file must be refused.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) or b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(text, object_pairs_hook=_no_dups)
    except (ValueError, _Dup, RecursionError):
        return None
    if not isinstance(doc, dict) or set(doc) < {"Folder", "SeriesInstanceUID", "Annotation"}:
        return None
    folder, uid, readings = doc["Folder"], doc["SeriesInstanceUID"], doc["Annotation"]

    def name_ok(s, limit):
        return isinstance(s, str) and s.strip() != "" and s.isprintable() and len(s) <= limit
    if not name_ok(folder, 255) or "/" in folder or "\\" in folder or folder in (".", ".."):
        return None
    if folder[1:2] == ":" or len(folder.encode("utf-8", "surrogatepass")) > 255:
        return None
    if not name_ok(uid, 128) or not isinstance(readings, dict) or not readings:
        return None

    def number(x):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return None
        try:
            x = float(x)
        except OverflowError:
            return None
        return x if math.isfinite(x) and 0 <= x <= 1e5 else None

    def point(p):
        if not isinstance(p, list) or len(p) != 3:
            return None
        xs = [number(x) for x in p]
        return None if None in xs else xs
    out = {}
    first = next((v for v in readings.values() if isinstance(v, list) and v), None)
    if first is None:
        return None
    v2 = isinstance(first[0], dict)
    for expert, items in readings.items():
        if not name_ok(expert, 128) or not isinstance(items, list) or not items:
            return None
        pts, levels = [], []
        for item in items:
            if v2:
                if not isinstance(item, dict) or not {"segments", "type"} <= set(item):
                    return None
                segs, level = item["segments"], item["type"]
                if level not in annotation.LEVELS or not isinstance(segs, list) or len(segs) != 3:
                    return None
                if not all(isinstance(s, list) and len(s) == 2 for s in segs):
                    return None
                six = [point(p) for s in segs for p in s]
                levels.append(level)
            else:
                if not isinstance(item, list) or len(item) != 6:
                    return None
                six = [point(p) for p in item]
                levels.append(None)
            if None in six:
                return None
            pts.append(six)
        keys = levels if v2 else [json.dumps(p) for p in pts]
        if len(set(keys)) != len(keys):        # one expert marks a vertebra once
            return None
        out[expert] = (np.array(pts, dtype=float), levels)
    return folder, uid, out


def _assert_project_error(exc: BaseException, path: Path) -> None:
    assert isinstance(exc, VfsError), f"{path.name}: {type(exc).__name__}: {exc}"
    assert path.name in str(exc), f"the message does not name the file: {exc}"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    for name, data in MUTANTS:
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def special_dir(tmp_path_factory) -> Path:
    """Files that are not regular files or cannot be opened: each named *.json."""
    folder = tmp_path_factory.mktemp("special")
    os.mkfifo(folder / "fifo.json")
    (folder / "loop.json").symlink_to(folder / "loop.json")
    (folder / "a.json").symlink_to(folder / "b.json")
    (folder / "b.json").symlink_to(folder / "a.json")
    (folder / "dangling.json").symlink_to(folder / "missing-target.json")
    (folder / "device.json").symlink_to("/dev/null")
    (folder / "folder.json").mkdir()
    (folder / "empty.json").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    write_series(root / "dicom" / FOLDER / "series-001", np.zeros(SHAPE, dtype=np.int16),
                 spacing=SPACING, series_uid=UID, study_uid=UID + ".1",
                 frame_of_reference_uid=UID + ".2")
    (root / "dicom" / "EMPTY-STUDY").mkdir()
    return root


# --------------------------------------------------------------------------- tests
def test_the_mutants_are_mostly_damaged_and_some_still_valid():
    refs = [_reference(data) for _, data in MUTANTS]
    n_valid = sum(r is not None for r in refs)
    # the mutator must exercise both branches of every entry point
    assert 0 < n_valid < len(MUTANTS) // 2
    assert len({data for _, data in MUTANTS}) == len(MUTANTS) == N_MUTANTS


def test_load_annotation(fuzz_dir):
    for name, data in MUTANTS:
        path = fuzz_dir / name
        ref = _reference(data)
        COUNTS["annotation.load_annotation"] += 1
        try:
            ann = annotation.load_annotation(path)
        except Exception as exc:      # noqa: BLE001 - the point of the test
            _assert_project_error(exc, path)
            assert ref is None, f"{name}: refused a valid file: {exc}"
            continue
        assert ref is not None, f"{name}: accepted a damaged file: {data[:200]!r}"
        folder, uid, experts = ref
        assert (ann.folder, ann.series_uid) == (folder, uid)
        assert list(ann.experts) == list(experts)
        for expert, (pts, levels) in experts.items():
            got = np.stack([v.points for v in ann.experts[expert]])
            np.testing.assert_array_equal(got, pts)
            assert [v.level for v in ann.experts[expert]] == levels


def test_special_files_are_refused_without_hanging(special_dir):
    for path in sorted(special_dir.iterdir()):
        COUNTS["annotation.load_annotation"] += 1
        with pytest.raises(VfsError, match=re.escape(path.name)):
            annotation.load_annotation(path)
    with pytest.raises(VfsError, match="FIFO"):
        annotation.load_annotation(special_dir / "fifo.json")
    with pytest.raises(VfsError, match="symlink loop"):
        annotation.load_annotation(special_dir / "loop.json")


def test_read_annotations_one_file_at_a_time_and_the_folder(fuzz_dir, special_dir):
    valid = [(n, d) for n, d in MUTANTS if _reference(d) is not None]
    for name, data in MUTANTS:
        path = fuzz_dir / name
        COUNTS["annotation.read_annotations"] += 1
        try:
            frame = annotation.read_annotations(path)
        except Exception as exc:      # noqa: BLE001
            _assert_project_error(exc, path)
            assert _reference(data) is None
            continue
        _, _, experts = _reference(data)
        assert len(frame) == sum(len(p) for p, _ in experts.values())
        assert np.isfinite(annotation.points(frame)).all()
    # a folder with one damaged file among valid ones: the damaged file is named
    with pytest.raises(VfsError, match="fifo.json"):
        annotation.read_annotations(special_dir / "fifo.json")
    COUNTS["annotation.read_annotations"] += 1
    assert len(valid) > 5


def test_match_and_match_vertebrae(fuzz_dir, dataset):
    for name, data in MUTANTS:
        path = fuzz_dir / name
        ref = _reference(data)
        COUNTS["matching.match"] += 1
        try:
            row = matching.match(path, dataset)
        except DataNotFoundError as exc:    # a valid file whose study folder is not there
            assert ref is not None and ref[0] != FOLDER
            assert str(dataset / "dicom" / ref[0]) in str(exc)
            continue
        except Exception as exc:      # noqa: BLE001
            _assert_project_error(exc, path)
            if ref is not None:      # valid, but another UID than the dataset's
                assert (ref[0], ref[1]) != (FOLDER, UID), exc
            continue
        assert ref is not None and (ref[0], ref[1]) == (FOLDER, UID)
        assert row["series_uid"] == UID and int(row["n_slices"]) == SHAPE[2]
        COUNTS["readings.match_vertebrae"] += 1
        frame = readings.match_vertebrae(annotation.read_annotations(path))
        # every expert's readings get distinct ids (one expert marks a vertebra once)
        assert not frame.duplicated(["expert", "vertebra_id"]).any()


def test_inventory_gives_one_row_per_file_and_never_raises(fuzz_dir, special_dir, dataset,
                                                           tmp_path):
    table = matching.inventory(dataset, fuzz_dir)
    COUNTS["matching.inventory"] += len(MUTANTS)
    assert list(table["file"]) == [name for name, _ in MUTANTS]
    for (name, data), row in zip(MUTANTS, table.itertuples()):
        ref = _reference(data)
        if ref is None:
            assert not row.ok and name in row.problem
        elif (ref[0], ref[1]) == (FOLDER, UID):
            pts = np.concatenate([p.reshape(-1, 3) for p, _ in ref[2].values()])
            inside = bool(((pts >= 0) & (pts <= np.array(SHAPE) - 1)).all())
            assert row.series_found and row.ok == inside
        else:
            assert not row.ok and row.problem
    # special files are rows with a problem too
    table = matching.inventory(dataset, special_dir)
    COUNTS["matching.inventory"] += len(table)
    assert len(table) == len(list(special_dir.iterdir())) and not table["ok"].any()


def test_morphometry_on_every_accepted_mutant(fuzz_dir):
    accepted = [(name, _reference(data)) for name, data in MUTANTS
                if _reference(data) is not None]
    COUNTS["morphometry.morphometry_table"] += len(accepted)
    COUNTS["morphometry.consensus"] += len(accepted)
    frame = readings.match_vertebrae(annotation.read_annotations(
        [fuzz_dir / name for name, _ in accepted]))
    table = morphometry.morphometry_table(frame, spacing=SPACING)
    # expected heights by hand: 3-D pair lengths in mm, pairs ordered by mean row
    expected = []
    for _, (_, _, experts) in accepted:
        for pts, _ in experts.values():
            for six in pts:
                pairs = [(six[2 * k], six[2 * k + 1]) for k in range(3)]
                pairs.sort(key=lambda pair: (pair[0][0] + pair[1][0]) / 2)
                expected.append([math.dist(a * np.array(SPACING), b * np.array(SPACING))
                                 for a, b in pairs])
    np.testing.assert_allclose(table[["ha", "hm", "hp"]].to_numpy(float), expected, rtol=1e-9)
    cons = morphometry.consensus(table)
    assert len(cons) == frame.groupby(["file", "vertebra_id"]).ngroups


def _run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_cli_morphometry_and_inventory(fuzz_dir, special_dir, dataset, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    for name, data in MUTANTS[::2]:
        for old in one.iterdir():
            old.unlink()
        (one / name).write_bytes(data)
        COUNTS["cli morphometry"] += 1
        code, out, err = _run_cli("morphometry", "--annotation-dir", one, "--spacing",
                                  *SPACING, "--format", "csv")
        if _reference(data) is None:
            assert code == 2 and out == "", (name, err)
            assert err.count("\n") == 1 and name in err and "Traceback" not in err
        else:
            assert code == 0 and err == "", (name, err)
    for folder in (fuzz_dir, special_dir):
        COUNTS["cli inventory"] += len(list(folder.iterdir()))
        code, out, err = _run_cli("inventory", dataset, "--annotation-dir", folder,
                                  "--format", "csv")
        assert code == 1 and "Traceback" not in err and err.count("\n") == 1


def test_counts_of_mutated_inputs_per_entry_point(capsys):
    # runs last in this module: report what each entry point saw
    with capsys.disabled():
        print("\nmutated inputs per entry point:",
              ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))
    assert all(v > 0 for v in COUNTS.values())
