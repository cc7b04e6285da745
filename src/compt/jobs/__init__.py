"""One job of ``train.py`` (a single run or one job of a sweep), from launch to result: how it was launched
(:mod:`~compt.jobs.launch`), the checks before anything loads (:mod:`~compt.jobs.preflight`), the claim, the
repair of an interrupted folder and ``force`` (:mod:`~compt.jobs.recovery`), the run the job is
(:mod:`~compt.jobs.job`), ``resume=`` (:mod:`~compt.jobs.resume_run`) and hyperparameter search
(:mod:`~compt.jobs.search`, :mod:`~compt.jobs.search_sweeper`).

The top of the package: it may import every layer below (the recipes, training, the config, the run folder),
and nothing below imports it.
"""
