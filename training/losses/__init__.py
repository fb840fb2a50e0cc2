"""Training losses of SC-DMD and cache-aware AR training: one file per loss, pure functions."""
from .critic import CausalTraining, flow_denoising_loss, teacher_forcing_inputs
from .dmd import dmd_loss, dmd_term
from .feature_align import feature_alignment_loss
from .self_consistency import (
    SCForm,
    SCTriplet,
    composed_path,
    sc_loss,
    sc_paths,
    sc_term,
    sc_triplet,
    student_update,
    triplet_for_grid,
)
from .timesteps import NoiseLevels, midpoint_sigma, sample_timesteps, unshift_sigma

__all__ = [
    "CausalTraining",
    "NoiseLevels",
    "SCForm",
    "SCTriplet",
    "composed_path",
    "dmd_loss",
    "dmd_term",
    "feature_alignment_loss",
    "flow_denoising_loss",
    "midpoint_sigma",
    "sample_timesteps",
    "sc_loss",
    "sc_paths",
    "sc_term",
    "sc_triplet",
    "student_update",
    "teacher_forcing_inputs",
    "triplet_for_grid",
    "unshift_sigma",
]
