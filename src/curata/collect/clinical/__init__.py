"""Clinical data at the edge: CSV / Excel (mapped by a site TOML) and FHIR R4/R4B/R5, into OMOP CDM v5.4
tables, with the site's key: the same pseudonyms and date shifts as the patient's images.

>>> from curata.collect.clinical import ClinicalIngestor, input_kind
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.clinical._index import INDEXED, backfill_index
    from curata.collect.clinical._omop import OMOP_TABLES, curata_columns, omop_columns, omop_fields
    from curata.collect.clinical.cohort import IndexedColumn, patient_rows
    from curata.collect.clinical.deid import ClinicalDeidentifier, patient_key
    from curata.collect.clinical.exchange import MANIFEST_TYPE, Batch
    from curata.collect.clinical.mapping import SiteMapping, load_mapping, parse_mapping
    from curata.collect.clinical.models import OMOP, clinical_index, clinical_source, clinical_table
    from curata.collect.clinical.service import (
        ClinicalIngestor,
        ClinicalOutcome,
        FiledBatch,
        FiledInput,
        batch_name,
        deidentified_batch,
        file_deidentified_batch,
        filed_inputs,
        input_kind,
        receive_batches,
    )
    from curata.collect.clinical.tables import clinical_rows, index_counts

__getattr__ = lazy_exports(
    __name__,
    {
        "INDEXED": "_index",
        "backfill_index": "_index",
        "IndexedColumn": "cohort",
        "patient_rows": "cohort",
        "clinical_rows": "tables",
        "index_counts": "tables",
        "clinical_index": "models",
        "clinical_table": "models",
        "OMOP_TABLES": "_omop",
        "omop_fields": "_omop",
        "omop_columns": "_omop",
        "curata_columns": "_omop",
        "ClinicalDeidentifier": "deid",
        "patient_key": "deid",
        "SiteMapping": "mapping",
        "load_mapping": "mapping",
        "parse_mapping": "mapping",
        "OMOP": "models",
        "clinical_source": "models",
        "ClinicalIngestor": "service",
        "ClinicalOutcome": "service",
        "input_kind": "service",
        "FiledBatch": "service",
        "FiledInput": "service",
        "batch_name": "service",
        "deidentified_batch": "service",
        "file_deidentified_batch": "service",
        "filed_inputs": "service",
        "receive_batches": "service",
        "Batch": "exchange",
        "MANIFEST_TYPE": "exchange",
    },
)

__all__ = [
    "INDEXED",
    "MANIFEST_TYPE",
    "OMOP",
    "OMOP_TABLES",
    "Batch",
    "ClinicalDeidentifier",
    "ClinicalIngestor",
    "ClinicalOutcome",
    "FiledBatch",
    "FiledInput",
    "IndexedColumn",
    "SiteMapping",
    "backfill_index",
    "batch_name",
    "clinical_index",
    "clinical_rows",
    "clinical_source",
    "clinical_table",
    "curata_columns",
    "deidentified_batch",
    "file_deidentified_batch",
    "filed_inputs",
    "index_counts",
    "input_kind",
    "load_mapping",
    "omop_columns",
    "omop_fields",
    "parse_mapping",
    "patient_key",
    "patient_rows",
    "receive_batches",
]
