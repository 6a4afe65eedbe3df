"""The exit codes of ``orchestrate sweep`` and ``orchestrate worker`` (README's CLI table)."""

OK = 0  # every trial complete or pruned
TRIALS_FAILED = 1  # trials failed after their retries, or the study storage was lost
USAGE = 2  # bad input: a config file or field, a store that cannot be opened at start
INTERRUPTED = 130  # stopped by a signal; the same command resumes
