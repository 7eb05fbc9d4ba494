"""Training the reference VLA on simulated demonstrations: pretrain, task finetune, co-finetune. No rclpy here."""
