"""node.log_format = "json": one JSON object per line, the same keys as the text format."""

import io
import json

from p2pfl.net.eventlog import EventLog


def test_json_lines_carry_the_same_event_and_fields_as_text():
    text, js = io.StringIO(), io.StringIO()
    for out, fmt in ((text, "text"), (js, "json")):
        log = EventLog("hospital-1", out, fmt=fmt)
        log.info("round_done", round=3, val_accuracy=0.91234567, missing="-", heard=["a", "b"])
        log.warn("odd", value=float("nan"), note='a "quoted"\nline', node="not me")
    first, second = (json.loads(line) for line in js.getvalue().splitlines())
    assert first["level"] == "info" and first["node"] == "hospital-1" and first["event"] == "round_done"
    assert (first["round"], first["val_accuracy"], first["heard"]) == (3, 0.91234567, ["a", "b"])
    assert second["value"] is None and second["note"] == 'a "quoted"\nline'
    assert second["node"] == "hospital-1"  # a field cannot overwrite the line's own keys
    assert first["time"].endswith("Z")
    assert "event=round_done round=3 val_accuracy=0.912346" in text.getvalue()
