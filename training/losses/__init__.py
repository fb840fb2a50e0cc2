"""Training losses of SC-DMD and cache-aware AR training (DESIGN §6): one file per loss, pure functions."""
from .critic import flow_denoising_loss, teacher_forcing_inputs
from .dmd import dmd_loss, dmd_term, model_x0, sample_dmd_timestep, teacher_x0
from .feature_align import feature_alignment_loss
from .self_consistency import (
    SCTriplet,
    sc_loss,
    sc_paths,
    sc_term,
    sc_triplet,
    student_update,
    student_x0,
    triplet_for_grid,
)
from .timesteps import midpoint_sigma, sample_timesteps, unshift_sigma

__all__ = [
    "SCTriplet",
    "dmd_loss",
    "dmd_term",
    "feature_alignment_loss",
    "flow_denoising_loss",
    "midpoint_sigma",
    "model_x0",
    "sample_dmd_timestep",
    "sample_timesteps",
    "sc_loss",
    "sc_paths",
    "sc_term",
    "sc_triplet",
    "student_update",
    "student_x0",
    "teacher_forcing_inputs",
    "teacher_x0",
    "triplet_for_grid",
    "unshift_sigma",
]
