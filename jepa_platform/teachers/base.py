"""The interface through which a teacher gives the loop its targets: `plugins.contracts.Teacher`.

The loop knows nothing of where targets come from: an EMA of the student, a frozen encoder or the
clip's own pixels all answer `targets`, may update themselves in `after_step`, and say what must be
saved in `state_dict`. `TeacherStrategy` is the contract's older name, kept for plugins that use it.
"""

from jepa_platform.plugins.contracts import OwnsPredictor, ReportsMetrics, Teacher

TeacherStrategy = Teacher

__all__ = ["OwnsPredictor", "ReportsMetrics", "Teacher", "TeacherStrategy"]
