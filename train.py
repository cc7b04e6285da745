"""Train ComPT prompts: ``python train.py [overrides]`` or a sweep, ``python train.py -m method=ssum,msum k=8,16``.

Configs live in ``conf/``, typed by :data:`compt.config.schema.TrainSchema`, which this script registers with
Hydra before it composes them (:func:`compt.config.hydra.register_config`; see README). Each run writes
results.json, predictions.jsonl, bank/ and checkpoints/last.ckpt to its output folder.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from compt.atomic import environment_error
from compt.config.command_line import check_overrides, refuse_unknown_schema_keys
from compt.config.hydra import register_config
from compt.config.schema import TrainSchema
from compt.errors import ClaimLost, ComptError, RunDiverged, RunInterrupted
from compt.jobs.launch import check_launch, how_to_resume, joblib_gpu, shared_output_dir
from compt.jobs.preflight import check_run_config
from compt.jobs.resume_run import resume_arguments
from compt.jobs.search import check_search, objective
from compt.runs import RUN_ELSEWHERE
from compt.runtime.numerics import set_portable_environment
from compt.runtime.runlog import route_run_log, to_log_file
from compt.runtime.stopping import JobStopped, stop_request

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``optimized_metric`` of the run (default: its test average) to Hydra
    sweepers, read back from the folder of a job that was already complete."""
    hydra_cfg = HydraConfig.get()
    route_run_log()
    if cfg.get("portable_cpu"):  # before torch computes anything in this process
        set_portable_environment()
    try:
        check_launch(cfg, hydra_cfg)
        check_search(cfg)
        refuse_unknown_schema_keys(cfg, TrainSchema)  # e.g. added by a YAML file of conf/
        schema = TrainSchema.from_hydra(cfg)
        check_run_config(schema)
        output_dir = shared_output_dir(hydra_cfg.runtime.output_dir)
        stop = stop_request()
        stop.begin(output_dir)
        with stop.handling():  # SIGTERM, SIGUSR1, SIGINT: a clean stop (compt.runtime.stopping)
            # The run driver (Lightning, transformers: seconds to import) is loaded once the config is known
            # to work, so a mistake in it answers at once.
            from compt.jobs.job import run_job

            with joblib_gpu(cfg, hydra_cfg):
                results = run_job(schema, output_dir, list(hydra_cfg.overrides.task))
        return objective(cfg, results, output_dir)
    except RunInterrupted as err:  # SIGTERM & co.: what was saved, how to resume; a sweep stops too
        sweep = hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None
        line = f"compt: {err}; {how_to_resume(hydra_cfg.runtime.output_dir, sweep)}"
        to_log_file(line, logging.ERROR)
        print(line, file=sys.stderr)
        stop_request().pass_on()  # a launcher's own handler of the signal (submitit: requeue)
        raise JobStopped(line, err.exit_code) from None
    except (
        ComptError,
        OSError,
    ) as err:  # a user's mistake, a diverged run, a full or read-only disk: one line
        error = err if isinstance(err, ComptError) else environment_error(err, RUN_ELSEWHERE)
        if error is None:
            raise  # a bug: its traceback
        line = f"compt: {error}"
        to_log_file(line, logging.ERROR)
        if isinstance(error, RunDiverged | ClaimLost) and hydra_cfg.mode == RunMode.MULTIRUN:
            print(line, file=sys.stderr)  # a result, not a crash: the rest of the sweep goes on
            return None
        raise SystemExit(line) from None


if __name__ == "__main__":
    register_config()  # the schema and the resolvers Hydra composes conf/ with
    try:  # resume=RUN_DIR: the run's own overrides and folder, before Hydra reads the command line
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        check_overrides(sys.argv[1:], TrainSchema, CONFIG_DIR)  # a typo'd key or option, with or without +
    except ComptError as err:
        raise SystemExit(f"compt: {err}") from None
    main()
