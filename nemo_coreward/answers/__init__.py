"""Final answers: extract them from responses and decide which are the same.

Pure Python, no torch. ``extract_answer`` -> ``Grader(mode).group(answers)``.
"""
from nemo_coreward.answers.equivalence import MODES, Grader, Grouping
from nemo_coreward.answers.extract import FALLBACKS, extract_answer, last_boxed
from nemo_coreward.answers.normalize import normalize, numeric_value

__all__ = [
    "FALLBACKS",
    "MODES",
    "Grader",
    "Grouping",
    "extract_answer",
    "last_boxed",
    "normalize",
    "numeric_value",
]
