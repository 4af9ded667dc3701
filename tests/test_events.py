"""The job event channel: one serialisation written by every driver, one reader for every follower."""

import json
import logging

from jepa_platform.events import VERSION, Done, Error, EventReader, Notice, Row, Stage, encode, render


def test_every_event_type_round_trips_through_one_line_and_renders_as_before():
    events = [Row({"step": 3, "loss": 0.25}), Stage("student", "resuming", 40), Notice("slow disk"),
              Error("first line\n  second line"), Done("job", "s3://b/runs/job")]
    reader = EventReader()
    for event in events:
        line = encode(event)
        assert "\n" not in line
        assert reader.feed(line) == event
    assert [render(e) for e in events] == [
        "step=3 loss=0.25", "stage student: resuming at step 40", "warning: slow disk",
        "error: first line\nerror:   second line", "done job: outputs in s3://b/runs/job"]
    assert (reader.last_step, reader.last_error) == (3, "first line\n  second line")


def test_plain_text_passes_through_and_an_older_drivers_lines_are_still_read():
    reader = EventReader()
    assert reader.feed("(raylet) a worker started") is None
    assert reader.feed("step=7 loss=0.5 lr=0.001") == Row({"step": 7, "loss": 0.5, "lr": 0.001})
    assert reader.feed("stage teacher: skipped") == Stage("teacher", "skipped", None)
    assert reader.last_step == 7


def test_torn_newer_and_unknown_events_are_skipped_with_a_warning(caplog):
    reader = EventReader()
    whole = encode(Row({"step": 1, "loss": 0.5}))
    newer = "jepa-event " + json.dumps({"v": VERSION + 1, "type": "row", "values": {"step": 2}})
    unknown = "jepa-event " + json.dumps({"v": VERSION, "type": "health", "rank": 0})
    with caplog.at_level(logging.WARNING):
        assert [reader.feed(line) for line in (whole[:25], newer, unknown, whole)] == [
            None, None, None, Row({"step": 1, "loss": 0.5})]
    assert reader.skipped == 3 and caplog.text.count("skipped a job event") == 3
    assert reader.last_step == 1
