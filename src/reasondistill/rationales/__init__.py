"""Rationales: how teachers are prompted, and how their answers are filtered, deduplicated and counted."""

from .filtering import (KEEP, dedup_records, format_stats, keep_records, make_record, record_from_example,
                        task_stats)
from .prompting import FewShotCoT, Stage, ZeroShotCoT, answer_trigger, question_block

__all__ = ["KEEP", "FewShotCoT", "Stage", "ZeroShotCoT", "answer_trigger", "dedup_records", "format_stats",
           "keep_records", "make_record", "question_block", "record_from_example", "task_stats"]
