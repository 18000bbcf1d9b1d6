"""Rationales: how teachers are prompted, and how their answers are filtered, deduplicated, chosen
among and counted."""

from .filtering import (KEEP, cost, dedup_records, format_stats, keep_records, make_record, record_from_example,
                        task_stats)
from .prompting import FewShotCoT, Stage, ZeroShotCoT, answer_trigger, question_block
from .selection import SELECT, format_selection, select_records, selection_stats

__all__ = ["KEEP", "SELECT", "FewShotCoT", "Stage", "ZeroShotCoT", "answer_trigger", "cost", "dedup_records",
           "format_selection", "format_stats", "keep_records", "make_record", "question_block",
           "record_from_example", "select_records", "selection_stats", "task_stats"]
