"""torchenv's demo classifier (torchenv_app.train) under Ray Train's TorchTrainer."""
