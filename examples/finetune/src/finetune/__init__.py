"""The fine-tuning pipeline of torchenv's worked example: preprocess, design, train,
evaluate, fine-tune (LoRA), deploy (TorchScript), on a small GPT-style model, offline."""
