"""Training losses of SC-DMD and cache-aware AR training: one file per loss, pure functions. Our own forms
(self_consistency, feature_align) sit beside the forms of Salt's released code (shortcut, gram_alignment,
mixed_steps)."""
from .critic import CausalTraining, flow_denoising_loss, teacher_forcing_inputs
from .dmd import dmd_loss, dmd_term
from .feature_align import feature_alignment_loss
from .gram_alignment import (
    GramAlignment,
    check_feature_block,
    frame_gram,
    gram_alignment_loss,
    gram_alignment_term,
    sample_feature_timestep,
)
from .mixed_steps import ReferenceStep, StepListDraw, draw_step_list, reference_path, reference_steps
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
from .shortcut import shortcut_consistency_loss, shortcut_times
from .timesteps import NoiseLevels, midpoint_sigma, sample_timesteps, unshift_sigma

__all__ = [
    "CausalTraining", "GramAlignment", "NoiseLevels", "ReferenceStep", "SCForm", "SCTriplet", "StepListDraw", "check_feature_block",
    "composed_path", "dmd_loss", "dmd_term", "draw_step_list", "feature_alignment_loss", "flow_denoising_loss",
    "frame_gram", "gram_alignment_loss", "gram_alignment_term", "midpoint_sigma", "reference_path", "reference_steps",
    "sample_feature_timestep", "sample_timesteps", "sc_loss", "sc_paths", "sc_term", "sc_triplet",
    "shortcut_consistency_loss", "shortcut_times", "student_update", "teacher_forcing_inputs", "triplet_for_grid",
    "unshift_sigma",
]
