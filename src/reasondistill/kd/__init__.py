"""White-box distillation: learn from the teacher's next-token distributions, not only its text.

When the teacher is an open model sharing the student's vocabulary (a 7B teaching a 0.5B of the same
family), its distribution at every position says far more than the one sampled rationale. The
trainer adds a token-level KD term to any method whose sequences the teacher can read, on exactly the
tokens the method trains, with the method's weights. Modules, each importing nothing above ``kd``:

- ``config``: ``KDConfig`` (teacher, loss, weight, temperature, beta), checked;
- ``divergences``: forward/reverse KL, JSD, TAID, one module each;
- ``taid``: TAID's schedule of the interpolation weight;
- ``tokenizers``: the shared-tokenizer check;
- ``teacher``: loading the teacher, tiny students on its tokenizer;
- ``store``: stored top-k teacher logits (``TeacherLogits``, ``write_teacher_logits``);
- ``distiller``: the per-run KD term the trainer calls.
"""

from .config import KD_LOSSES, KDConfig
from .distiller import Distiller, teacher_spec, use_stored_logits
from .divergences import JSD, ForwardKL, ReverseKL, TAIDLoss, divergence, make_divergence
from .store import TeacherLogits, logits_path, sequence_key, write_teacher_logits
from .taid import TAIDSchedule
from .teacher import load_teacher, teacher_path, tiny_student_for_teacher, tiny_student_with_tokenizer
from .tokenizers import PROBE, check_same_tokenizer, vocab_list

__all__ = ["JSD", "KD_LOSSES", "PROBE", "Distiller", "ForwardKL", "KDConfig", "ReverseKL", "TAIDLoss",
           "TAIDSchedule", "TeacherLogits", "check_same_tokenizer", "divergence", "load_teacher", "logits_path",
           "make_divergence", "sequence_key", "teacher_path", "teacher_spec", "tiny_student_for_teacher",
           "tiny_student_with_tokenizer", "use_stored_logits", "vocab_list", "write_teacher_logits"]
