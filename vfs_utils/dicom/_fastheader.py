"""A minimal reader of native little-endian DICOM headers: the cold path's fast lane.

Inside: :func:`_fast_read` reads the file meta group and then the data set of
an Explicit or Implicit VR Little Endian file (:data:`NATIVE_LE`) up to the
pixel data, keeping the raw bytes of the few elements in :data:`_TAGS` (plus
SpecificCharacterSet) in a :class:`_FastHeader`, which answers the same
``get``/``get_item``/``in`` calls that :mod:`._files` makes on a pydicom
data set; sequences (defined or undefined length, nested) are skipped
(:func:`_skip_sequence`, :func:`_element_length`); :func:`_pixel_element`
gives the offset and length of the pixel data element (also used after a
pydicom read).

Why it exists: pydicom's full parser costs about ten times more per file on
the cold path (the first listing of a study folder), measured in
``benchmarks/bench_load_series.py``. It is not a DICOM parser: anything it
is unsure of -- another transfer syntax, no preamble, an undefined-length
element other than a sequence, a truncated or odd element, a character set
it does not decode (:class:`_NeedPydicom`) -- makes it return None or raise,
and the file is read by pydicom instead (:func:`vfs_utils.dicom._files._record`).
Values are still converted and checked by :mod:`._files`, through pydicom's
own conversion of raw elements.
"""
from __future__ import annotations

import struct
from typing import Any

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__: list[str] = []

#: The header fields a record holds: what this reader keeps, and pydicom's ``specific_tags``
#: when :mod:`._files` falls back to it (defined here so that both read the same list).
_TAGS = [
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "ImageType",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
]

#: The transfer syntaxes read natively (by this reader and by the pixel loader).
NATIVE_LE = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def _pixel_element(fh: Any, at: int, implicit: bool) -> tuple[int, int] | None:
    """``(value offset, value length)`` of the pixel data element starting at `at`."""
    fh.seek(at)
    head = fh.read(12)
    if len(head) < 8:
        return None
    group, elem = struct.unpack("<HH", head[:4])
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None
    if implicit:
        length = struct.unpack("<I", head[4:8])[0]
        offset = at + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return None
        length = struct.unpack("<I", head[8:12])[0]
        offset = at + 12
    else:
        length = struct.unpack("<H", head[6:8])[0]
        offset = at + 8
    return offset, length


_WANTED = {pydicom.datadict.tag_for_keyword(kw): kw for kw in (*_TAGS, "SpecificCharacterSet")}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TEXT_ENCODING = {None: "iso8859", "ISO_IR 100": "latin_1", "ISO_IR 6": "iso8859",
                  "ISO_IR 192": "UTF8"}


class _NeedPydicom(Exception):
    """The minimal reader leaves this file to pydicom (e.g. a character set it does not know)."""


class _FastHeader:
    """The few elements :func:`_fields` reads, found by a minimal reader of native
    little-endian files (pydicom's full parser costs ten times more per file)."""

    def __init__(self, elements: dict[int, tuple[str | None, bytes, int]], implicit: bool):
        self._elements = elements
        self.original_encoding = (implicit, True)
        self._encoding = None

    def get_item(self, tag: int) -> Any:
        item = self._elements.get(tag)
        if item is None:
            return None
        vr, value, tell = item
        return pydicom.dataelem.RawDataElement(
            pydicom.tag.Tag(tag), vr, len(value), value, tell, vr is None, True)

    def __contains__(self, keyword: str) -> bool:
        return pydicom.datadict.tag_for_keyword(keyword) in self._elements

    def get(self, keyword: str) -> Any:
        item = self._elements.get(pydicom.datadict.tag_for_keyword(keyword))
        if item is None:
            return None
        if self._encoding is None:
            charset = self._elements.get(0x00080005)
            term = charset[1].decode("ascii", "replace").strip(" \0") if charset else None
            self._encoding = _TEXT_ENCODING.get(term or None, "")
        if not self._encoding:
            raise _NeedPydicom(keyword)
        text = item[1].decode(self._encoding, "replace").rstrip(" \0")
        parts = [p.strip(" \0") for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts


def _skip_sequence(fh: Any, implicit: bool, depth: int) -> bool:
    """Skip the items of an undefined-length sequence, up to its delimiter."""
    if depth > 16:
        return False
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return False
        group, elem, length = struct.unpack("<HHI", head)
        tag = group << 16 | elem
        if tag == _SEQ_END:
            return True
        if tag != _ITEM:
            return False
        if length != 0xFFFFFFFF:
            fh.seek(length, 1)
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            head = fh.read(8)
            if len(head) < 8:
                return False
            group, elem = struct.unpack("<HH", head[:4])
            tag = group << 16 | elem
            if tag == _ITEM_END:
                break
            length = _element_length(fh, head, implicit)
            if length is None:
                return False
            if length == 0xFFFFFFFF:
                if not _skip_sequence(fh, implicit, depth + 1):
                    return False
            else:
                fh.seek(length, 1)


def _element_length(fh: Any, head: bytes, implicit: bool) -> int | None:
    """The value length of the element whose first 8 bytes are `head` (reads 4 more for
    explicit VRs with a 32-bit length); None when the bytes are not an element header."""
    if implicit:
        return struct.unpack("<I", head[4:8])[0]
    vr = head[4:6]
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        return None
    if vr in _LONG_VRS:
        ext = fh.read(4)
        if len(ext) < 4:
            return None
        length = struct.unpack("<I", ext)[0]
        if length == 0xFFFFFFFF and vr not in (b"SQ",):
            return None  # undefined-length OB/UN: leave it to pydicom
        return length
    return struct.unpack("<H", head[6:8])[0]


def _fast_read(fh: Any, size: int) -> tuple[_FastHeader, str, str, int | None] | None:
    """``(header, transfer syntax, SOP class, offset where reading stopped)`` of a native
    little-endian file, or None for anything the minimal reader does not handle."""
    pre = fh.read(132)
    if len(pre) < 132 or pre[128:132] != b"DICM":
        return None
    meta: dict[int, bytes] = {}
    pos = 132
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return None
        group, elem = struct.unpack("<HH", head[:4])
        if group != 2:
            break
        length = _element_length(fh, head, False)
        if length is None or length == 0xFFFFFFFF:
            return None
        value = fh.read(length)
        if len(value) < length:
            return None
        meta[group << 16 | elem] = value
        pos += (12 if head[4:6] in _LONG_VRS else 8) + length
    ts = meta.get(0x00020010, b"").decode("ascii", "replace").strip(" \0")
    sop_class = meta.get(0x00020002, b"").decode("ascii", "replace").strip(" \0")
    if ts not in NATIVE_LE:
        return None
    implicit = ts == NATIVE_LE[1]
    elements: dict[int, tuple[str | None, bytes, int]] = {}
    while True:
        group, elem = struct.unpack("<HH", head[:4])
        tag = group << 16 | elem
        if tag in _PIXEL_TAGS or tag > 0x7FE00010:
            return _FastHeader(elements, implicit), ts, sop_class, pos
        length = _element_length(fh, head, implicit)
        if length is None:
            return None
        hdr = 12 if (not implicit and head[4:6] in _LONG_VRS) else 8
        if length == 0xFFFFFFFF:
            if not _skip_sequence(fh, implicit, 0):
                return None
            pos = fh.tell()
        else:
            if tag in _WANTED:
                value = fh.read(length)
                if len(value) < length:
                    return None
                vr = None if implicit else head[4:6].decode("ascii")
                elements[tag] = (vr, value, pos + hdr)
            else:
                fh.seek(length, 1)
            pos += hdr + length
        if pos > size:
            return None
        head = fh.read(8)
        if len(head) < 8:
            return _FastHeader(elements, implicit), ts, sop_class, None
