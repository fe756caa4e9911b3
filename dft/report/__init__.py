"""The paper's tables and figures, our ablations and the cost plan, built from result files."""
