"""The twin's dynamics model: hetero GNN encoder, neural ODE with treatment inputs, decoders."""

from twin.config import ModelConfig
from twin.model.checkpoint import CHECKPOINT_FORMAT, TwinEnsemble
from twin.model.decoders import LabDecoder
from twin.model.dynamics import LatentDynamics, solve
from twin.model.hetero_encoder import HeteroPatientEncoder
from twin.model.twin_model import Encoded, Rollout, TwinModel

__all__ = ["CHECKPOINT_FORMAT", "Encoded", "HeteroPatientEncoder", "LabDecoder", "LatentDynamics", "ModelConfig", "Rollout", "TwinEnsemble", "TwinModel", "solve"]
