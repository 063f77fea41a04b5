"""Training pipeline: corpus -> vocabulary -> model -> evaluation -> TorchScript -> model store."""
