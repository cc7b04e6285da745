"""What a run leaves on disk and who may write it: the run folder (:mod:`~compt.runs.folder`: ``RunDir``,
results.json and its schema, the bank), the claim on a job folder (:mod:`~compt.runs.claims`), the overrides that
name a job (:mod:`~compt.runs.identity`) and the provenance a run records (:mod:`~compt.runs.provenance`).

Training writes these, and evaluation, prediction, the report and the sweep listing read them; nothing here
imports Lightning. ``from compt.runs import RunDir`` (every public name of :mod:`~compt.runs.folder`) is
imported on first use.
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.runs.folder": [
            "BANK_DIR",
            "CHECKPOINT_DIR",
            "CLAIM_FILE",
            "COMPLETE",
            "DIVERGED",
            "EVAL_DIR",
            "FORCED_MARKER",
            "FORMAT_VERSION",
            "HYDRA_CONFIG",
            "HYDRA_DIR",
            "HYDRA_OVERRIDES",
            "LAST_CHECKPOINT",
            "LOGGER_DIRS",
            "MASK_PREDICTIONS_FILE",
            "PREDICTIONS_FILE",
            "READINGS",
            "RESULTS_FILE",
            "RESULTS_OPTIONAL",
            "RESULTS_SCHEMA",
            "RUN_ELSEWHERE",
            "TEMP_PATTERNS",
            "BankLocation",
            "JobStatus",
            "RunCheck",
            "RunDir",
            "bank_problem",
            "finished",
            "finished_notice",
            "load_bank",
            "locate_bank",
            "nonfinite_metrics",
            "results_problems",
            "write_json_atomic",
        ]
    },
)
