"""The pipeline document alone: both specs' shapes, validation with field paths, hashing, diffs."""

from __future__ import annotations

import pytest

from orchestration.specs import DocumentError, PipelineDocument, document_diff

AI_ETL_EXAMPLE = {
    "name": "Daily Sales",
    "sources": [
        {"id": "source_1", "type": "clickhouse", "config": {"host": "ch", "database": "raw", "table": "tx"}}
    ],
    "transformations": [
        {
            "id": "transform_1",
            "type": "sql",
            "code": "SELECT toDate(ts) AS day, sum(amount) FROM source_1 GROUP BY day",
        }
    ],
    "targets": [
        {"id": "target_1", "type": "clickhouse", "config": {"database": "analytics", "table": "daily_sales"}}
    ],
    "schedule": "0 2 * * *",
}


def test_spec_shape_is_lifted_into_fields() -> None:
    doc = PipelineDocument.parse(AI_ETL_EXAMPLE)
    assert (doc.sources[0].database, doc.sources[0].table) == ("raw", "tx")
    assert doc.transformations[0].sql and doc.transformations[0].code is None
    assert (doc.targets[0].database, doc.targets[0].table) == ("analytics", "daily_sales")
    assert doc.input_of(doc.targets[0]) == "transform_1"
    assert doc.cron_schedules() == [("schedule", "0 2 * * *", "UTC", True)]


def test_hash_ignores_formatting_but_not_content() -> None:
    same = PipelineDocument.parse({**AI_ETL_EXAMPLE, "schedule": "0  2 * * *"})
    other = PipelineDocument.parse({**AI_ETL_EXAMPLE, "schedule": "0 3 * * *"})
    assert PipelineDocument.parse(AI_ETL_EXAMPLE).content_hash() == same.content_hash()
    assert other.content_hash() != same.content_hash()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"schedule": "61 * * * *"}, "schedule", "cron"),
        ({"schedule_timezone": "Mars/Base"}, "schedule_timezone", "timezone"),
        ({"targets": [{"table": "t; DROP TABLE x"}]}, "targets.0.table", "pattern"),
        ({"targets": [{"table": "calendar_days"}]}, "targets.0", "platform"),
        ({"targets": [{"table": "t", "database": "system"}]}, "targets.0", "warehouse itself"),
        ({"targets": [{"table": "t", "input": "nope"}]}, "targets.0.input", "not a source"),
        ({"targets": [{"table": "t", "mode": "merge"}]}, "targets.0", "merge_keys"),
        ({"sources": [{"type": "postgresql", "config": {"table": "t"}}]}, "sources.0", "connector_id"),
        (
            {"sources": [{"type": "clickhouse", "table": "t", "config": {"password": "x"}}]},
            "sources.0",
            "credentials",
        ),
        ({"sources": [{"type": "csv", "connector_id": "c1", "path": "../etc/passwd"}]}, "sources.0", ".."),
        ({"description": "x" * 1_000_000}, "description", "at most"),
        ({"transformations": [{"type": "python", "code": "print(1)"}]}, "transformations.0", "def transform"),
        ({"name": 42}, "name", "string"),
    ],
)
def test_bad_documents_name_the_field(change: dict, field: str, words: str) -> None:
    with pytest.raises(DocumentError) as caught:
        PipelineDocument.parse({**AI_ETL_EXAMPLE, **change})
    assert caught.value.field == field
    assert words in caught.value.message


def test_duplicate_ids_are_refused() -> None:
    body = {**AI_ETL_EXAMPLE, "targets": [{"id": "source_1", "table": "t"}]}
    with pytest.raises(DocumentError) as caught:
        PipelineDocument.parse(body)
    assert caught.value.field == "targets.0.id"


def test_diff_matches_list_items_by_id() -> None:
    old = PipelineDocument.parse(AI_ETL_EXAMPLE).model_dump(mode="json")
    new_body = {
        **AI_ETL_EXAMPLE,
        "schedule": "0 3 * * *",
        "targets": [{"id": "target_0", "table": "first"}, *AI_ETL_EXAMPLE["targets"]],  # type: ignore[list-item]
    }
    new = PipelineDocument.parse(new_body).model_dump(mode="json")
    changes = {(c["path"], c["change"]) for c in document_diff(old, new)}
    assert changes == {("schedule", "changed"), ("targets.target_0", "added")}
    assert document_diff(old, old) == []
