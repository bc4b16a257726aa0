"""Annotation: projects with coded label schemas, task queues from cohorts, blinded double reading,
reads filed from DICOM SEG/SR (and imported NIfTI, NRRD, RTSTRUCT), agreement, adjudication, and the
accepted labels a release carries.

Public API (the CLI, the server, the demo and publish use these)::

    create_project(ws, name, cohort, readers_per_task=2, blinded=True, ...) -> ProjectInfo
    set_schema(ws, project, labels, instructions), add_reader(ws, project, user, site=..., adjudicator=...)
    create_tasks(ws, project) -> int; assign(ws, project[, task_id, reader]) -> {reader: load}
    queue(ws, project, reader), start(...), submit(...), list_tasks(...), status(ws, project)
    file_object(ws, dicom_bytes), file_new_objects(ws), import_labelmap(ws, project, series, reader, path)
    visible_reads(ws, project, task, user)                      # blinding
    compute_agreement(ws, project), adjudicate(...), accept_review(...), accepted_labels(ws, project)
    agreement_table(ws, project), reader_stats(ws, project), project_summary(ws, project)
    surface_distances(a, b, spacing, convention), label_agreement(a, b, spacing)   # the metrics
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.annotate._agreement import label_agreement, surface_distances
    from curata.annotate.service import (
        LabelDef,
        accept_review,
        accepted_labels,
        add_reader,
        adjudicate,
        agreement_table,
        assign,
        assist_models,
        classification_kappa,
        compute_agreement,
        create_project,
        create_tasks,
        draft_agreement,
        file_classification,
        file_labelmap,
        file_new_objects,
        file_object,
        import_labelmap,
        list_projects,
        list_tasks,
        next_sample,
        predict_draft,
        project_summary,
        queue,
        read_labelmap,
        reader_stats,
        register_bundle,
        release_labels,
        render_report,
        seg_for,
        series_grid,
        set_report_template,
        set_schema,
        show_project,
        sign_report,
        source_images,
        staple,
        start,
        status,
        submit,
        task_agreement,
        train_model,
        visible_reads,
        volume_hu,
        write_report,
    )

_SERVICE = [
    "LabelDef",
    "accept_review",
    "accepted_labels",
    "add_reader",
    "adjudicate",
    "agreement_table",
    "assign",
    "assist_models",
    "classification_kappa",
    "compute_agreement",
    "create_project",
    "create_tasks",
    "draft_agreement",
    "file_classification",
    "file_labelmap",
    "file_new_objects",
    "file_object",
    "import_labelmap",
    "list_projects",
    "list_tasks",
    "next_sample",
    "predict_draft",
    "project_summary",
    "queue",
    "read_labelmap",
    "reader_stats",
    "register_bundle",
    "release_labels",
    "render_report",
    "seg_for",
    "series_grid",
    "set_report_template",
    "set_schema",
    "show_project",
    "sign_report",
    "source_images",
    "staple",
    "start",
    "status",
    "submit",
    "task_agreement",
    "train_model",
    "visible_reads",
    "volume_hu",
    "write_report",
]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(_SERVICE, "service"),
        "label_agreement": "_agreement",
        "surface_distances": "_agreement",
    },
)

__all__ = [
    "LabelDef",
    "accept_review",
    "accepted_labels",
    "add_reader",
    "adjudicate",
    "agreement_table",
    "assign",
    "assist_models",
    "classification_kappa",
    "compute_agreement",
    "create_project",
    "create_tasks",
    "draft_agreement",
    "file_classification",
    "file_labelmap",
    "file_new_objects",
    "file_object",
    "import_labelmap",
    "label_agreement",
    "list_projects",
    "list_tasks",
    "next_sample",
    "predict_draft",
    "project_summary",
    "queue",
    "read_labelmap",
    "reader_stats",
    "register_bundle",
    "release_labels",
    "render_report",
    "seg_for",
    "series_grid",
    "set_report_template",
    "set_schema",
    "show_project",
    "sign_report",
    "source_images",
    "staple",
    "start",
    "status",
    "submit",
    "surface_distances",
    "task_agreement",
    "train_model",
    "visible_reads",
    "volume_hu",
    "write_report",
]
