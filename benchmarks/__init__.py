"""forgetbench benchmarks: data, streams, the protocol, metrics and run records."""
import warnings

# Avalanche imports qpsolvers (for GEM) and warns when no solver is installed; forgetbench needs none.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
