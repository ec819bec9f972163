"""JSON Schema of pipeline files, for editor completion and validation as you type."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from openanomaly.config.pipeline import Pipeline, PipelineList
from openanomaly.durations import format_duration

SCHEMA_ID = "https://openanomaly.dev/schema/pipeline.json"


class _Generator(GenerateJsonSchema):
    """Defaults that are durations are shown as users write them (`1d`), not ISO 8601."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def pipeline_file_schema() -> dict[str, Any]:
    schema = TypeAdapter(Pipeline | PipelineList).json_schema(schema_generator=_Generator)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "OpenAnomaly pipeline file",
        "description": "One pipeline, or several under 'pipelines:'.",
        **schema,
    }
