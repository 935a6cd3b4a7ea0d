"""Training: the multi-task model, fine-tuning, teacher, distillation, head refit, base-weight conversion."""
